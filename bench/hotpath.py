"""The pipeline's own per-message cost, without broker or database: ``Pipeline.handle`` in process.

    .venv/bin/python -m bench.hotpath [--messages 50000] [--workloads W1,W2] [--no-alerts] [--spool] [--repeat 3]

Feeds the bench workloads' real topics and payloads to the real ``Pipeline.handle`` (validation, line
protocol, alert rules, batching; the spool when ``--spool``) with a writer that drops its batches, and
prints CPU microseconds per message. What it leaves out (MQTT receive, PUBACKs, HTTP writes) is what
``python -m bench`` part (c) adds. Use it to justify a hot-path change with a number before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.pipeline import SHIPPED_RULES, bench_rules_dir
from bench.workload import DISTRICT_INVENTORY, DISTRICT_TYPES, generate, synthetic, workloads, write_profiles
from citytelemetry.testing import CountingDelivery, DroppingWriter


async def _measure(root: Path, name: str, count: int, *, alerts: bool, spool: bool,
                   use_synthetic: bool) -> tuple[float, int]:
    from citytelemetry.alerts import build_evaluator
    from citytelemetry.config import Settings
    from citytelemetry.contracts import InboundMessage
    from citytelemetry.profiles import load_catalog
    from citytelemetry.run import build_pipeline

    work = next(w for w in workloads(1.0, messages=count) if w.name == name)
    if use_synthetic:
        work = synthetic(work)
        types_dir, inventory_dir = write_profiles(root / name, work.devices)
        rules = bench_rules_dir(root / name)
    else:
        types_dir, inventory_dir, rules = DISTRICT_TYPES, DISTRICT_INVENTORY, SHIPPED_RULES
    settings = Settings.model_validate({
        "mqtt": {"topic_prefix": "bench/hot"},
        "pipeline": {"profiles_dir": str(types_dir), "inventory_dir": str(inventory_dir),
                     "spool_dir": str(root / name / "spool") if spool else None},
        "alerts": {"enabled": alerts, "rules_dir": str(rules), "state_file": str(root / name / "state.json")},
    })
    catalog = load_catalog(types_dir, inventory_dir)
    factory = (lambda emit: build_evaluator(settings, catalog, emit)) if alerts else None
    pipeline = build_pipeline(settings, catalog, writer=DroppingWriter(), evaluator_factory=factory)
    if pipeline.spool is not None:
        pipeline.spool.open()
    now_ms = int(time.time() * 1000)
    count_delivery = CountingDelivery()
    inbound = [InboundMessage(topic, body, now_ms, count_delivery)
               for topic, body in generate(work).share("bench/hot", 0, 1)]
    flush = asyncio.create_task(pipeline.sink.run())
    started = time.process_time()
    for message in inbound:
        await pipeline.handle(message)
    await pipeline.sink.wait_settled()
    cpu = time.process_time() - started
    await pipeline.sink.close()
    await flush
    return cpu / len(inbound) * 1e6, count_delivery.settled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--no-alerts", action="store_true")
    parser.add_argument("--spool", action="store_true", help="through the write-ahead spool (fsync per group)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per workload; the best is printed")
    parser.add_argument("--synthetic", action="store_true", help="the bench_sensor workload instead of the district")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ct-hot-") as tmp:
        for name in args.workloads.split(","):
            runs = [asyncio.run(_measure(Path(tmp) / str(run), name, args.messages, alerts=not args.no_alerts,
                                         spool=args.spool, use_synthetic=args.synthetic)) for run in range(args.repeat)]
            micros = sorted(m for m, _ in runs)
            print(f"{name}: {micros[0]:.1f} µs CPU per message, best of {len(runs)} (all: "
                  f"{', '.join(f'{m:.1f}' for m in micros)}; {runs[0][1]} settled per run)")


if __name__ == "__main__":
    main()
