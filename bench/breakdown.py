"""Where a district message's CPU goes, in process: per stage, per validation step, per alert rule kind, GC.

    .venv/bin/python -m bench.breakdown [--messages 50000] [--workloads W1,W2] [--spool]

The same feed as ``bench.hotpath`` (the district workload through the real ``Pipeline.handle``, the
shipped rules, a writer that drops its batches) measured three ways:

1. plain, alerts on and off: CPU µs per message; the difference is what the alert rules cost;
2. under cProfile (deterministic, so its own overhead inflates small functions: read the shares, not
   the absolute µs), grouped: handler, validation steps (functions of ``validate/``), line protocol,
   alert observer, each rule kind (inclusive time of its ``__call__``: the rule and its tracker calls),
   the sink;
3. plain again with ``gc.callbacks`` timing every collection: count, total and longest pause by generation.

Run it pure Python (``CITYTELEMETRY_PURE_PYTHON=1``): cProfile cannot see inside mypyc-compiled functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import inspect
import os
import pstats
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.pipeline import SHIPPED_RULES
from bench.workload import DISTRICT_INVENTORY, DISTRICT_TYPES, generate, workloads
from citytelemetry.compiled import PURE_PYTHON_ENV
from citytelemetry.config import PipelineSettings
from citytelemetry.observability.gcpauses import freeze_startup_objects
from citytelemetry.testing import CountingDelivery, DroppingWriter


def _pipeline(root: Path, *, alerts: bool, spool: bool) -> Any:
    from citytelemetry.alerts import build_evaluator
    from citytelemetry.config import Settings
    from citytelemetry.profiles import load_catalog
    from citytelemetry.run import build_pipeline

    settings = Settings.model_validate({
        "mqtt": {"topic_prefix": "bench/hot"},
        "pipeline": {"profiles_dir": str(DISTRICT_TYPES), "inventory_dir": str(DISTRICT_INVENTORY),
                     "spool_dir": str(root / "spool") if spool else None},
        "alerts": {"enabled": alerts, "rules_dir": str(SHIPPED_RULES), "state_file": str(root / "state.json")},
    })
    catalog = load_catalog(DISTRICT_TYPES, DISTRICT_INVENTORY)
    factory = (lambda emit: build_evaluator(settings, catalog, emit)) if alerts else None
    pipeline = build_pipeline(settings, catalog, writer=DroppingWriter(), evaluator_factory=factory)
    if pipeline.spool is not None:
        pipeline.spool.open()
    return pipeline


async def _feed(pipeline: Any, inbound: list[Any], profiler: cProfile.Profile | None = None) -> float:
    flush = asyncio.create_task(pipeline.sink.run())
    gc.collect()
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    for message in inbound:
        await pipeline.handle(message)
    await pipeline.sink.wait_settled()
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - started
    await pipeline.sink.close()
    await flush
    return cpu


def _inbound(name: str, count: int) -> list[Any]:
    from citytelemetry.contracts import InboundMessage

    work = next(w for w in workloads(1.0, messages=count) if w.name == name)
    now_ms = int(time.time() * 1000)
    delivery = CountingDelivery()
    return [InboundMessage(topic, body, now_ms, delivery) for topic, body in generate(work).share("bench/hot", 0, 1)]


def _rule_kinds() -> dict[tuple[str, int], str]:
    """(file, first line) of each rule class's ``__call__`` -> class name."""
    from citytelemetry.alerts import rules

    out = {}
    for name, cls in inspect.getmembers(rules, inspect.isclass):
        call = cls.__dict__.get("__call__")
        if cls.__module__ == rules.__name__ and call is not None:
            out[(call.__code__.co_filename, call.__code__.co_firstlineno)] = name
    return out


def _groups(stats: pstats.Stats, total_s: float, n: int) -> list[str]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # (file, line, name) -> (cc, nc, tt, ct, callers)
    kinds = _rule_kinds()
    inclusive: dict[str, float] = defaultdict(float)
    steps: dict[str, float] = defaultdict(float)
    for (path, line, func), (_, _calls, tottime, cumtime, _) in raw.items():
        kind = kinds.get((path, line))
        if kind is not None:
            inclusive[f"rule {kind}"] += cumtime
        if "/citytelemetry/validate/" in path:
            steps[f"{Path(path).stem}.{func}"] += tottime
        for label, target in (("handler (all of it)", ("run/handler.py", "__call__")),
                              ("validation (MessageValidator)", ("validate/validator.py", "__call__")),
                              ("line protocol (reading_line)", ("sink/line_protocol.py", "reading_line")),
                              ("alerts (ReadingObserver.observe)", ("alerts/observer.py", "observe")),
                              ("alert lifecycle (Tracker.update)", ("alerts/lifecycle.py", "update")),
                              ("sink put", ("sink/", "put"))):
            matches = path.endswith(target[0]) or (target[0].endswith("/") and target[0] in path)
            if matches and func == target[1]:
                inclusive[label] += cumtime
    lines = [f"under cProfile: {total_s / n * 1e6:.1f} µs per message ({n} messages)", "",
             "| inclusive (cumulative) | µs/message | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {v / n * 1e6:.2f} | {100 * v / total_s:.1f} % |"
              for k, v in sorted(inclusive.items(), key=lambda kv: -kv[1])]
    lines += ["", "| validation step (self time) | µs/message | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {v / n * 1e6:.2f} | {100 * v / total_s:.1f} % |"
              for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:15]]
    return lines


def _rules_in_isolation(inbound: list[Any], root: Path) -> list[str]:
    """Each rule kind called over every reading of its types, alone, timed with the process clock: no
    profiler overhead. The readings come from the real validator; the rules from the shipped files."""
    from citytelemetry.alerts.compile import compile_rules
    from citytelemetry.alerts.lifecycle import Tracker
    from citytelemetry.alerts.rulefiles import load_rule_files
    from citytelemetry.profiles import load_catalog
    from citytelemetry.validate import Limits, MessageValidator
    from citytelemetry.validate.ratelimit import DeviceRateLimit

    catalog = load_catalog(DISTRICT_TYPES, DISTRICT_INVENTORY)
    validator = MessageValidator(catalog, Limits(), topic_prefix="bench/hot",
                                 rate_limit=DeviceRateLimit.from_catalog(catalog))
    readings = [r for m in inbound for r in validator(m).readings]
    ruleset = compile_rules(catalog, load_rule_files(SHIPPED_RULES, catalog), Tracker(lambda _: None),
                            runbook_base=str(root))
    by_kind: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for measurement, rules in ruleset.by_type.items():
        for rule in rules:
            by_kind[type(rule).__name__].append((measurement, rule))
    n = len(inbound)
    lines = ["", f"rule kinds in isolation ({len(readings)} readings of {n} messages):", "",
             "| rule kind | rules | calls | µs/message | µs/call |", "|---|---:|---:|---:|---:|"]
    for kind, of_kind in sorted(by_kind.items()):
        calls = [(rule, [r for r in readings if r.measurement == m]) for m, rule in of_kind]
        started = time.process_time()
        for rule, mine in calls:
            for reading in mine:
                rule(reading)
        cpu = time.process_time() - started
        count = sum(len(mine) for _, mine in calls)
        lines.append(f"| {kind} | {len(of_kind)} | {count} | {cpu / n * 1e6:.2f} | {cpu / max(count, 1) * 1e6:.2f} |")
    for count_rule in ruleset.every_reading:
        started = time.process_time()
        for reading in readings:
            count_rule(reading)
        cpu = time.process_time() - started
        lines.append(f"| completeness count (every reading) | 1 | {len(readings)} | {cpu / n * 1e6:.2f} | "
                     f"{cpu / len(readings) * 1e6:.2f} |")
    return lines


class _GcTimer:
    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
            return
        g, pause = info["generation"], time.perf_counter() - self._t
        self.count[g] += 1
        self.total[g] += pause
        self.longest[g] = max(self.longest[g], pause)


async def _run(name: str, count: int, spool: bool, gc_threshold: int | None) -> list[str]:
    inbound = _inbound(name, count)
    out = [f"## {name}: {len(inbound)} district messages", ""]
    with tempfile.TemporaryDirectory(prefix="ct-breakdown-") as tmp:
        plain = {}
        for alerts in (True, False):
            plain[alerts] = await _feed(_pipeline(Path(tmp) / f"plain{alerts}", alerts=alerts, spool=spool), inbound)
        n = len(inbound)
        out += [(f"plain: {plain[True] / n * 1e6:.1f} µs CPU per message with alerts, {plain[False] / n * 1e6:.1f} "
                f"without: the rules cost {(plain[True] - plain[False]) / n * 1e6:.1f} µs per message"), ""]
        profiler = cProfile.Profile(time.process_time)  # CPU time: the box is shared, wall time is not ours
        total = await _feed(_pipeline(Path(tmp) / "prof", alerts=True, spool=spool), inbound, profiler)
        out += _groups(pstats.Stats(profiler), total, n)
        out += _rules_in_isolation(inbound, Path(tmp))
        timer = _GcTimer()
        pipeline = _pipeline(Path(tmp) / "gc", alerts=True, spool=spool)
        thresholds = gc.get_threshold()
        # As `citytelemetry run` does after start-up: collect, freeze, the shipped young threshold.
        freeze_startup_objects(gc_threshold if gc_threshold is not None else PipelineSettings().gc_young_objects)
        used = gc.get_threshold()
        gc.callbacks.append(timer)
        try:
            cpu = await _feed(pipeline, inbound)
        finally:
            gc.callbacks.remove(timer)
            gc.set_threshold(*thresholds)
            gc.unfreeze()
        out += ["", (f"GC (start-up objects frozen, as in `citytelemetry run`; thresholds {used}): "
                     "collections gen 0/1/2 "
                f"{timer.count[0]}/{timer.count[1]}/{timer.count[2]}, {sum(timer.total) * 1000:.0f} ms of "
                f"{cpu * 1000:.0f} ms CPU ({100 * sum(timer.total) / cpu:.1f} %), longest pause by generation "
                f"{' / '.join(f'{x * 1000:.1f}' for x in timer.longest)} ms"), ""]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--spool", action="store_true", help="through the write-ahead spool (fsync per group)")
    parser.add_argument("--gc-threshold", type=int, default=None,
                        help="generation-0 threshold for the GC run (default: pipeline.gc_young_objects)")
    args = parser.parse_args(argv)
    if os.environ.get(PURE_PYTHON_ENV) != "1":
        print(f"note: {PURE_PYTHON_ENV} is not 1; compiled functions are invisible to cProfile")
    for name in args.workloads.split(","):
        print("\n".join(asyncio.run(_run(name, args.messages, args.spool, args.gc_threshold))))


if __name__ == "__main__":
    main()
