"""``citytelemetry export``: a time range of raw or rollup data to CSV or Parquet, streamed (docs/storage.md).

    citytelemetry export --device tun-c001-gas1 --from 2026-11-01 --to 2026-12-01 --format csv > gas.csv
    citytelemetry export --system station --tier rollup_1h --from now-365d --format parquet --output year/

One measurement (device type) goes to ``--output FILE`` or stdout (CSV); several (a ``--system``) go to
``--output DIR/<type>.<csv|parquet>``. Progress goes to stderr, only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from citytelemetry.cli.storage import parse_time
from citytelemetry.config import Settings
from citytelemetry.profiles import load_catalog
from citytelemetry.storage.build import reader
from citytelemetry.storage.export import (
    RAW,
    Column,
    CsvSink,
    ExportError,
    ParquetSink,
    RowSink,
    Selection,
    export,
    selections,
)
from citytelemetry.storage.query import QueryError
from citytelemetry.storage.retention import raw_policy
from citytelemetry.storage.schema import rollup_schema
from citytelemetry.storage.tiers import rollup_tiers


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser("export", help="stream a time range (raw or a rollup tier) to CSV or Parquet")
    cmd.add_argument("--system", choices=["tunnel", "station", "network"])
    cmd.add_argument("--device", help="one device id of the inventory")
    cmd.add_argument("--measurement", help="one device type (its InfluxDB measurement)")
    cmd.add_argument("--from", dest="start", type=parse_time, required=True,
                     help="2026-11-01, 2026-11-01T06:00:00Z (UTC without an offset) or now-30d")
    cmd.add_argument("--to", dest="end", type=parse_time, default=None, help="default: now")
    cmd.add_argument("--tier", default=RAW, help="raw (default) or a rollup tier of [storage] tiers")
    cmd.add_argument("--format", choices=["csv", "parquet"], default="csv")
    cmd.add_argument("--output", type=Path, default=None, help="file (one measurement) or directory; CSV: stdout")


def handle(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_export(args, settings))
    except (ExportError, QueryError, OSError) as exc:
        print(f"citytelemetry export: {exc}", file=sys.stderr)
        return 1


def _progress(err: TextIO) -> Callable[[str, int, int, int], None] | None:
    if not err.isatty():
        return None

    def show(measurement: str, rows: int, done_ms: int, total_ms: int) -> None:
        err.write(f"\r{measurement}: {rows:,} rows, {100 * done_ms / total_ms:5.1f} %")
        if done_ms >= total_ms:
            err.write("\n")
        err.flush()

    return show


def _sink_for(selection: Selection, args: argparse.Namespace, several: bool) -> Callable[[Sequence[Column]], RowSink]:
    suffix = "parquet" if args.format == "parquet" else "csv"
    path: Path | None = args.output
    if several:
        if path is None:
            raise ExportError("several measurements: give --output DIR")
        path.mkdir(parents=True, exist_ok=True)
        path = path / f"{selection.measurement}.{suffix}"
    if args.format == "parquet":
        if path is None:
            raise ExportError("--format parquet needs --output")
        target = path
        return lambda cols: ParquetSink(target, cols)
    if path is None:
        return lambda cols: CsvSink(sys.stdout, cols)
    handle = path.open("w", encoding="utf-8", newline="")

    class _Closing(CsvSink):
        def close(self) -> None:
            super().close()
            handle.close()

    return lambda cols: _Closing(handle, cols)


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    catalog = load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)
    tiers = [t.name for t in rollup_tiers(settings.storage)]
    if args.tier != RAW and args.tier not in tiers:
        raise ExportError(f"--tier {args.tier!r}: not raw nor a configured tier ({', '.join(tiers)})")
    end = args.end if args.end is not None else parse_time("now")
    chosen = selections(catalog, system=args.system, device=args.device, measurement=args.measurement,
                        start_ms=args.start, end_ms=end)
    schema = rollup_schema(catalog)
    query = reader(settings)
    progress = _progress(sys.stderr)
    try:
        for selection in chosen:
            rows = await export(query, selection, schema[selection.measurement],
                                _sink_for(selection, args, len(chosen) > 1), tier=args.tier,
                                raw_rp=raw_policy(settings.influx), progress=progress)
            if args.output is not None:
                print(f"{selection.measurement}: {rows} rows", file=sys.stderr)
    finally:
        await query.aclose()
    return 0
