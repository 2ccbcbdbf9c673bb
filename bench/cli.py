"""``python -m bench``: measure the broker, InfluxDB and the pipeline on the same workloads; print and record.

    .venv/bin/python -m bench                       # everything at default scale (about 20-25 min, 2 cores)
    .venv/bin/python -m bench --scale 0.05          # everything shrunk (counts, durations, rates)
    .venv/bin/python -m bench --only a,c --no-record
    .venv/bin/python -m bench --only c,d --baseline 7c652b0   # (c) also with the pipeline of 7c652b0
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.codetree import CodeTree, checkout
from bench.machine import ROOT, describe, hot_path_compiled, load_text
from bench.parts import Context, part_a, part_b, part_c, part_d, part_e, part_f, part_g
from bench.results import Row, ratios, table, targets
from bench.services import private_services
from bench.workload import paced_devices, synthetic, workloads, write_profiles
from citytelemetry.compiled import PURE_PYTHON_ENV

PARTS = ("a", "b", "c", "d", "e", "f", "g")
SUBSCRIBERS = ("paho", "paho311", "mosquitto_sub", "aiomqtt", "gmqtt", "mqtt5")
# gmqtt is measured for comparison only and is not a project dependency (.venv/bin/pip install gmqtt).
DEFAULT_SUBSCRIBERS = tuple(s for s in SUBSCRIBERS if s != "gmqtt" or importlib.util.find_spec("gmqtt"))
RESULTS = ROOT / "bench" / "RESULTS.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shrink everything: messages, devices, durations, rates (default 1)")
    parser.add_argument("--only", default=",".join(PARTS), help="parts to run, e.g. a,b,c (default all)")
    parser.add_argument("--workloads", default="W1,W2", help="W1, W2 or both (default both)")
    parser.add_argument("--subscribers", default=",".join(DEFAULT_SUBSCRIBERS),
                        help=f"bare subscribers for (a), of {','.join(SUBSCRIBERS)} (default: "
                             f"{','.join(DEFAULT_SUBSCRIBERS)}; gmqtt when installed)")
    parser.add_argument("--no-alerts", action="store_true", help="run the pipeline with alerts.enabled = false")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file the run is appended to")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to the results file")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run directory (logs, data)")
    parser.add_argument("--no-synthetic", action="store_true",
                        help="leave out the extra (c) rows of the synthetic bench_sensor workload")
    parser.add_argument("--members", type=int, default=3,
                        help="partitioned members in (d): pipeline.partition 1/N … N/N (default 3)")
    parser.add_argument("--baseline", metavar="REF", default=None,
                        help="also run (c) with the pipeline of git ref REF (e.g. 7c652b0), both pure Python, "
                             "and print now/before (default off)")
    return parser


def _selected(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return chosen


def run(ctx: Context, parts: list[str], names: list[str], subscribers: list[str], *,
        extra_synthetic: bool, members: int = 3, baseline: CodeTree | None = None) -> list[Row]:
    rows: list[Row] = []
    scale = ctx.scale
    chosen = [w for w in workloads(scale) if w.name in names]
    for work in chosen:
        ctx.say(f"{work.name}: {work.devices} district devices, {work.messages} messages x {work.batch} readings")
        if "a" in parts:
            rows += part_a(ctx, work, subscribers)
        if "b" in parts:
            rows += part_b(ctx, work)
        if "c" in parts:
            rows.append(part_c(ctx, work))
            if hot_path_compiled():
                rows.append(part_c(ctx, work, pure_python=True))
            if baseline is not None:  # beside today's pure-Python row (results.pure_now): load changes slowly
                rows.append(part_c(ctx, work, code=baseline))
            if extra_synthetic:
                rows.append(part_c(ctx, synthetic(work)))
        if "d" in parts:
            rows.append(part_d(ctx, work, members))
    if {"e", "f", "g"} & set(parts):
        rows += paced_parts(ctx, parts, chosen[0].devices if chosen else workloads(scale)[0].devices)
    return rows


def paced_parts(ctx: Context, parts: list[str], n_devices: int) -> list[Row]:
    """(e), (f), (g): district devices at their cadence, device time accelerated to the part's rate."""
    rows: list[Row] = []
    scale, devices = ctx.scale, paced_devices(n_devices)
    if "e" in parts:
        rows += part_e(ctx, devices, [1000 * min(1.0, scale * 4), 5000 * min(1.0, scale * 4)],
                       duration_s=max(3.0, 20 * scale))
    if "f" in parts:
        rows.append(part_f(ctx, devices, rate=2000 * min(1.0, scale * 4), warmup_s=max(2.0, 10 * scale),
                           outage_s=max(3.0, 60 * scale)))
    if "g" in parts:
        rows.append(part_g(ctx, devices, rate=5000 * min(1.0, scale * 4), duration_s=max(3.0, 600 * scale)))
    return rows


def report(rows: list[Row], meta: dict[str, str], scale: float, alerts: bool, elapsed_s: float) -> str:
    lines = [f"## {meta['date']} — scale {scale:g}", "",
             f"- machine: {meta['machine']}", f"- load: {meta['load']}", f"- software: {meta['software']}",
             f"- commit: {meta['commit']}", f"- command: `{meta['command']}`", f"- build: {meta['build']}",
             (f"- pipeline: shipped defaults (spool on, /metrics on, alerts.enabled = {str(alerts).lower()} with the "
              "shipped alert_rules/); devices: the shipped district profiles and inventory, every type, values from "
              "simulators/ (the synthetic `bench_sensor` rows are marked)"),
             *([f"- baseline: {meta['baseline']}"] if "baseline" in meta else []),
             f"- wall time of the run: {elapsed_s / 60:.1f} min", "", table(rows)]
    found = ratios(rows)
    if found:
        lines += ["Ratios (points/s, this run):", "", *[f"- {r}" for r in found], ""]
    checked = targets(rows)
    if checked:
        lines += ["Targets of issue 15 (this run):", "", *[f"- {t}" for t in checked], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    # Stop cleanly (services, pipelines, publishers) on SIGTERM, and on SIGINT even if started in the background.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parts = _selected(args.only, PARTS, "part")
    names = _selected(args.workloads, ("W1", "W2"), "workload")
    subscribers = _selected(args.subscribers, SUBSCRIBERS, "subscriber")
    if args.members < 1:
        raise SystemExit("--members must be at least 1")
    if args.baseline is not None and "c" not in parts:
        raise SystemExit("--baseline compares part (c): add c to --only")
    started = time.monotonic()
    meta = describe(argv)
    root = Path(tempfile.mkdtemp(prefix="ct-bench-"))
    try:
        devices = max(w.devices for w in workloads(args.scale))
        synthetic_dirs = write_profiles(root / "profiles", devices)
        baseline = None
        if args.baseline is not None:  # first: a bad ref fails before anything is generated or started
            try:
                baseline = checkout(ROOT, args.baseline, root / "before")
            except ValueError as exc:
                raise SystemExit(f"--baseline: {exc}") from None
            meta["baseline"] = (f"(c) also with the pipeline of {baseline.ref} = {baseline.commit[:12]} (its src/, "
                                "device_profiles/ and alert_rules/ by git archive into the run directory), "
                                f"that row and today's beside it in pure Python ({PURE_PYTHON_ENV}=1)")
        with private_services(root / "services") as services:
            ctx = Context(services, root / "work", uuid.uuid4().hex[:6], args.scale, synthetic_dirs,
                          alerts=not args.no_alerts)
            ctx.say(f"services: {services.mqtt_url}, {services.influx_url}; run dir {root}; load {meta['load']}")
            rows = run(ctx, parts, names, subscribers, extra_synthetic=not args.no_synthetic,
                       members=args.members, baseline=baseline)
        meta["load"] += f"; at the end: {load_text()}"
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text = report(rows, meta, args.scale, not args.no_alerts, time.monotonic() - started)
    print(text)
    if not args.no_record:
        with args.results.open("a", encoding="utf-8") as f:
            f.write("\n" + text)
    if args.json is not None:
        args.json.write_text(json.dumps([{"part": r.part, "workload": r.workload, "what": r.what,
                                          "msgs_per_s": r.msgs_per_s, "points_per_s": r.points_per_s,
                                          "details": r.details, **r.figures} for r in rows], indent=2))
    return 0
