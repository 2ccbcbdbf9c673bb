"""``citytelemetry storage plan|apply|script|backfill``: the retention tiers and rollups (docs/storage.md).

``plan`` prints points per day and disk per tier from the inventory and the profiles' cadences, and what
``apply`` creates; ``apply`` creates the 1.x retention policies (as an admin); ``script`` prints the same
for an operator (InfluxQL for 1.x, ``influx`` commands for 2.x); ``backfill`` computes every rollup window
of a past range from the raw data (after an import, or when rollups were off).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys

from citytelemetry.config import Settings
from citytelemetry.profiles import load_catalog
from citytelemetry.security.influx import ADMIN, Account
from citytelemetry.security.local import local_credentials
from citytelemetry.sink.errors import WriteError
from citytelemetry.storage.build import backfill, build_rollups
from citytelemetry.storage.durations import seconds
from citytelemetry.storage.plan import render_plan, storage_plan
from citytelemetry.storage.query import QueryError
from citytelemetry.storage.retention import RetentionError, apply_v1, influx2_commands, statements, tier_lines
from citytelemetry.storage.schema import rollup_schema


def parse_time(text: str) -> int:
    """Epoch ms from ``2026-01-31``, ``2026-01-31T12:00:00Z`` (UTC if no offset) or ``now-7d``."""
    if text.startswith("now"):
        now = dt.datetime.now(tz=dt.UTC).timestamp()
        return int((now - (seconds(text[4:]) if text[3:4] == "-" else 0)) * 1000)
    try:
        parsed = dt.datetime.fromisoformat(text)  # Python 3.11 reads the Z suffix
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time like 2026-01-31, 2026-01-31T12:00:00Z or now-7d: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    storage = commands.add_parser("storage", help="retention tiers, rollups, sizing")
    actions = storage.add_subparsers(dest="action", required=True)
    actions.add_parser("plan", help="points per day and disk per tier, and what `apply` creates")
    actions.add_parser("apply", help="create / change the InfluxDB 1.x retention policies (admin)")
    script = actions.add_parser("script", help="print what creates the tiers, for an operator")
    script.add_argument("--target", choices=["influx1", "influx2"], default=None,
                        help="default: influx.api (v1 -> InfluxQL, v2 -> influx CLI commands)")
    fill = actions.add_parser("backfill", help="compute every rollup window of a past range from raw data")
    fill.add_argument("--from", dest="start", type=parse_time, required=True)
    fill.add_argument("--to", dest="end", type=parse_time, default=parse_time("now"))


def handle(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "plan":
        return _plan(settings)
    if args.action == "script":
        target = args.target or ("influx2" if settings.influx.api == "v2" else "influx1")
        lines = (influx2_commands(settings.storage, settings.influx) if target == "influx2"
                 else [*(s + ";" for s in statements(settings.storage, settings.influx)),
                       "-- then, into retention policy ct_meta (POST /write?rp=ct_meta&precision=ms):",
                       *(f"-- {line}" for line in tier_lines(settings.storage, settings.influx))])
        print("\n".join(lines))
        return 0
    if args.action == "apply":
        try:
            done = apply_v1(settings.storage, settings.influx, _admin(settings))
        except RetentionError as exc:
            print(f"citytelemetry storage apply: {exc}", file=sys.stderr)
            return 1
        print("\n".join(done) if done else "retention policies already as configured")
        return 0
    return asyncio.run(_backfill(settings, args.start, args.end))


def _admin(settings: Settings) -> Account | None:
    """The local admin of ``citytelemetry security influx-setup`` when InfluxDB needs a user."""
    if settings.influx.username is None:
        return None  # no authentication (local services): as anonymous
    creds = local_credentials(settings, create=False)
    return Account(ADMIN, creds.source.influx_password(ADMIN))


def _plan(settings: Settings) -> int:
    catalog = load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)
    loads = storage_plan(settings.storage, catalog, rollup_schema(catalog))
    print("\n".join(render_plan(loads, len(catalog.devices))))
    print("\nwill create (citytelemetry storage apply; 2.x: storage script --target influx2):")
    print("\n".join(f"  {s}" for s in statements(settings.storage, settings.influx)))
    return 0


async def _backfill(settings: Settings, start_ms: int, end_ms: int) -> int:
    catalog = load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)
    rollups = build_rollups(settings, catalog)
    try:
        written = await backfill(rollups, start_ms, end_ms)
    except (QueryError, WriteError) as exc:
        print(f"citytelemetry storage backfill: {exc}", file=sys.stderr)
        return 1
    finally:
        await rollups.aclose()
    print(f"{written} rollup points written")
    return 0
