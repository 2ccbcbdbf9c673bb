"""``python -m simulators``: publish the simulated district to a broker.

Live progress goes to stderr; the final summary (counts, expected points, fault manifest) is one JSON
document on stdout, so ``python -m simulators ... > run.json`` keeps what the pipeline must match.
Exit status: 0 done, 1 broker trouble, 2 bad arguments or profiles.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from citytelemetry.cli.times import time_ms
from citytelemetry.profiles import ProfileError, load_catalog
from citytelemetry.topics import PREFIX
from simulators.faults import MAX_PAYLOAD_BYTES, FaultPlanError, parse_fault_counts
from simulators.generate import DistrictSimulator, Pacing, Summary
from simulators.publishing import MqttTarget, Progress, PublishError, publish
from simulators.scenarios import SCENARIOS

MAX_AGE_S = 7 * 86_400  # the pipeline's default pipeline.max_age_s


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mqtt-url", default="mqtt://127.0.0.1:11883", help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--client-id", help="MQTT client id (default ct-sim-<seed>-<pid>)")
    p.add_argument("--profiles", type=Path, default=Path("device_profiles/types"))
    p.add_argument("--inventory", type=Path, default=Path("device_profiles/inventory"))
    p.add_argument("--topic-prefix", default=PREFIX)
    p.add_argument("--duration", type=float, help="simulated seconds (default 60, unless --messages is given)")
    p.add_argument("--messages", type=int, help="stop after this many scheduled messages")
    p.add_argument("--speed", type=float, default=1.0,
                   help="simulated seconds per wall second: 1 real time, 10 ten times faster, 0 unpaced")
    p.add_argument("--rate", type=float, help="messages per second, ignoring the devices' cadence")
    p.add_argument("--batch", type=int, default=1, help="readings per message (batch payload when > 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=time_ms,
                   help="simulated start, epoch ms or ISO 8601 (default: now in real time, else now - duration)")
    p.add_argument("--faults", default="",
                   help="reason=count,... e.g. not_json=2,out_of_range=3; all=N for every reason")
    p.add_argument("--max-payload-bytes", type=int, default=MAX_PAYLOAD_BYTES,
                   help="the pipeline's limit, for payload_too_large faults")
    p.add_argument("--systems", type=_csv, help="comma-separated: tunnel,station,network (default all)")
    p.add_argument("--max-devices", type=int, help="at most N devices, taken round-robin over device types")
    p.add_argument("--per-device-connections", action="store_true",
                   help="one MQTT connection per device, each with its own last will (small runs)")
    p.add_argument("--no-status", action="store_true", help="publish no retained online/offline status")
    p.add_argument("--per-device-counts", action="store_true", help="add points_by_device to the summary")
    p.add_argument("--scenario", choices=sorted(SCENARIOS),
                   help="an incident on top of normal operation (simulators/scenarios.py); default duration: "
                        "the scenario's span plus 60 s")
    p.add_argument("--dry-run", action="store_true", help="compute the run and its summary without a broker")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def _simulator(args: argparse.Namespace) -> DistrictSimulator:
    catalog = load_catalog(args.profiles, args.inventory)
    scenario = SCENARIOS[args.scenario] if args.scenario else None
    default = scenario.span_s + 60 if scenario else 60.0
    duration = args.duration if args.duration is not None else (None if args.messages else default)
    return DistrictSimulator(
        catalog, seed=args.seed, start_ms=args.start, topic_prefix=args.topic_prefix, duration_s=duration,
        max_messages=args.messages, batch=args.batch, pacing=Pacing(speed=args.speed, rate=args.rate),
        faults=parse_fault_counts(args.faults), systems=args.systems, max_devices=args.max_devices,
        max_payload_bytes=args.max_payload_bytes, scenario=scenario)


def _report(progress: Progress) -> None:
    sim_time = datetime.fromtimestamp(progress.sim_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    rate = progress.messages_sent / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
    print(f"[{progress.elapsed_s:7.1f} s] {progress.messages_sent} sent, {progress.acknowledged} acked, "
          f"{progress.expected_points} points, sim {sim_time}Z, {rate:.0f} msg/s", file=sys.stderr, flush=True)


def _print_summary(summary: Summary, per_device: bool) -> None:
    print(json.dumps(summary.to_dict(per_device=per_device), indent=2))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        target = MqttTarget.from_url(args.mqtt_url, args.username, args.password)
        sim = _simulator(args)
    except (ProfileError, FaultPlanError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    span_s = (sim.end_ms - sim.start_ms) / 1000
    if span_s > MAX_AGE_S:
        print(f"warning: the run spans {span_s / 86_400:.1f} simulated days; the pipeline refuses readings "
              "older than 7 days (timestamp_too_old)", file=sys.stderr)
    if not args.quiet:
        print(f"{len(sim.devices)} devices, {sim.planned_messages} scheduled messages over {span_s:.0f} "
              f"simulated s, mode {sim.pacing.mode}, seed {sim.seed}, start {sim.start_ms}", file=sys.stderr)
    if args.dry_run:
        _print_summary(sim.dry_run(), args.per_device_counts)
        return 0
    stop = threading.Event()

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        print("stopping: offline status, waiting for the last acknowledgements (Ctrl-C again to abort)",
              file=sys.stderr)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        summary = publish(sim, target, client_id=args.client_id, per_device_connections=args.per_device_connections,
                          status=not args.no_status, stop=stop, progress=None if args.quiet else _report)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.summary is not None:
            _print_summary(exc.summary, args.per_device_counts)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    _print_summary(summary, args.per_device_counts)
    return 0
