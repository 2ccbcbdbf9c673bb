"""``citytelemetry deadletters list | show | replay``: the dead-letter store (deadletters/store.py).

    deadletters list [--reason R] [--device D] [--since T] [--kind message|line] [--json]
    deadletters show ID                       one entry whole: topic, reasons, detail, payload
    deadletters replay [--reason R] [--device D] [--since T] [--dry-run]
                                              re-validate against the current profiles, land what passes

``--since`` takes epoch milliseconds, an ISO 8601 time, or an age: ``90s``, ``30m``, ``6h``, ``2d``.
Exit codes: 0 all passed, 1 something is still refused or a write failed, 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from citytelemetry.config import Settings
from citytelemetry.deadletters.entries import EntryFilter, StoredEntry, read_entries, select
from citytelemetry.deadletters.replay import ReplayReport, land, revalidate
from citytelemetry.profiles import load_catalog
from citytelemetry.sink.errors import WriteError
from citytelemetry.sink.factory import make_writer
from citytelemetry.validate.offline import offline_validator

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def since_ms(text: str, now_ms: int | None = None) -> int:
    """Epoch ms, ISO 8601 (with an offset, else UTC), or an age like ``30m`` before now."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if text.isdigit():
        return int(text)
    if text[:-1].isdigit() and text[-1:] in _AGES:
        return now_ms - int(text[:-1]) * _AGES[text[-1]] * 1000
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected epoch ms, ISO 8601 or an age like 30m") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", help="only entries refused (also) for this reason code")
    parser.add_argument("--device", help="only entries of this device id")
    parser.add_argument("--since", type=since_ms, help="only entries received since (epoch ms, ISO 8601, or 30m)")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dead = commands.add_parser("deadletters", help="refused messages kept whole: list, show, replay them")
    actions = dead.add_subparsers(dest="deadletters_action", required=True)
    listing = actions.add_parser("list", help="stored dead letters, oldest first")
    _filters(listing)
    listing.add_argument("--kind", choices=["message", "line"], help="refused messages, or lines InfluxDB refused")
    listing.add_argument("--json", action="store_true", help="one JSON object per entry")
    show = actions.add_parser("show", help="one entry whole, payload included")
    show.add_argument("id", help="an entry id from `deadletters list` (segment.line, e.g. 3.17)")
    replay = actions.add_parser("replay", help="re-validate against the current profiles; land what now passes")
    _filters(replay)
    replay.add_argument("--dry-run", action="store_true", help="print the lines instead of writing them")


def _error(text: str) -> None:
    sys.stderr.write(f"citytelemetry: {text}\n")


def _store_dir(settings: Settings) -> Path | None:
    return settings.pipeline.deadletter_dir


def handle(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    directory = _store_dir(settings)
    if directory is None:
        _error("pipeline.deadletter_dir is not set: no dead letters are kept")
        return EXIT_USAGE
    entries = read_entries(directory)
    if args.deadletters_action == "show":
        entry = next((e for e in entries if e.id == args.id), None)
        if entry is None:
            _error(f"no dead letter {args.id!r} in {directory}")
            return EXIT_USAGE
        _show(entry, out)
        return EXIT_OK
    keep = EntryFilter(reason=args.reason, device=args.device, since_ms=args.since,
                       kind=getattr(args, "kind", None) or ("message" if args.deadletters_action == "replay" else None))
    chosen = select(entries, keep)
    if args.deadletters_action == "list":
        for entry in chosen:
            print(_json(entry) if args.json else _row(entry), file=out)
        return EXIT_OK
    return _replay(chosen, settings, out, dry_run=args.dry_run)


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reasons(entry: StoredEntry) -> str:
    return ",".join(f"{reason}={count}" for reason, count in entry.reasons.items()) or entry.reason


def _row(entry: StoredEntry) -> str:
    if entry.kind == "line":
        return f"{entry.id}\t{_time(entry.received_ms)}\tline\t{entry.record}\t{entry.server[:80]}"
    return (f"{entry.id}\t{_time(entry.received_ms)}\t{_reasons(entry)}\t{entry.device or '-'}\t{entry.topic}\t"
            f"{len(entry.payload)} bytes")


def _json(entry: StoredEntry) -> str:
    return json.dumps({"id": entry.id, "kind": entry.kind, "received_ms": entry.received_ms, "topic": entry.topic,
                       "device": entry.device, "reasons": entry.reasons, "detail": entry.detail,
                       "bytes": len(entry.payload), "record": entry.record or None})


def _show(entry: StoredEntry, out: TextIO) -> None:
    print(f"id:       {entry.id}\nreceived: {_time(entry.received_ms)} ({entry.received_ms})", file=out)
    if entry.kind == "line":
        print(f"record:   {entry.record} (refused by InfluxDB)\nserver:   {entry.server}\nline:     {entry.line}",
              file=out)
        return
    print(f"topic:    {entry.topic}\ndevice:   {entry.device or '- (not in the inventory)'}\n"
          f"reasons:  {_reasons(entry)}\ndetail:   {entry.detail}", file=out)
    try:
        text = entry.payload.decode("utf-8")
    except UnicodeDecodeError:
        text = "(not UTF-8, hex) " + entry.payload.hex()
    print(f"payload:  {len(entry.payload)} bytes{' (truncated)' if entry.truncated else ''}\n{text}", file=out)


def _replay(entries: list[StoredEntry], settings: Settings, out: TextIO, *, dry_run: bool) -> int:
    catalog = load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)
    report = revalidate(entries, offline_validator(settings, catalog))
    if dry_run:
        out.writelines(line.decode() + "\n" for line in report.lines)
    else:
        try:
            asyncio.run(_land(report, settings))
        except WriteError as exc:
            _error(f"writing {len(report.lines)} points failed: {exc}; nothing is lost, run replay again")
            return EXIT_REFUSED
    written = "would write" if dry_run else "wrote"
    print(f"# replayed {report.replayed} messages: {report.passed} pass now, {len(report.still_refused)} still "
          f"refused; {written} {len(report.lines)} points", file=out)
    for entry, dead in report.still_refused:
        print(f"# still refused {entry.id} {dead.reasons_text}: {dead.detail}", file=out)
    for entry, why in report.skipped:
        print(f"# skipped {entry.id}: {why}", file=out)
    return EXIT_REFUSED if report.still_refused else EXIT_OK


async def _land(report: ReplayReport, settings: Settings) -> None:
    writer = make_writer(settings.influx)
    try:
        await land(report.lines, writer)
    finally:
        await writer.aclose()
