"""``citytelemetry dashboards build|preview``: wired into the main command line by ``add_commands``/``handle``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from citytelemetry.config import Settings
from citytelemetry.dashboards.build import build_dashboards, rendered_files, write_files
from citytelemetry.dashboards.formulas import KpiSourceError
from citytelemetry.dashboards.kpi import KpiError, KpiSettings, load_kpi_settings
from citytelemetry.dashboards.macros import TimeRange, parse_duration
from citytelemetry.profiles import Catalog, load_catalog

DEFAULT_KPI_FILE = Path("dashboards/kpi.toml")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("dashboards", help="Grafana dashboards generated from the device profiles")
    actions = parser.add_subparsers(dest="dashboards_action", required=True)
    build = actions.add_parser("build", help="write dashboard JSON and Grafana provisioning files")
    build.add_argument("--out", type=Path, default=Path("build/grafana"), help="build directory (build/grafana)")
    preview = actions.add_parser("preview", help="render every dashboard's panels to PNG from InfluxDB")
    preview.add_argument("--out", type=Path, default=Path("build/preview"), help="output directory (build/preview)")
    preview.add_argument("--range", dest="last", default="6h", help="time range back from now (6h)")
    preview.add_argument("--site", action="append", default=None, help="site to show (repeatable; default all)")
    for sub in (build, preview):
        sub.add_argument("--kpi", type=Path, default=None,
                         help=f"KPI settings TOML (default: {DEFAULT_KPI_FILE} if present, else built-in defaults)")


def _kpi(path: Path | None) -> KpiSettings:
    if path is None and DEFAULT_KPI_FILE.is_file():
        path = DEFAULT_KPI_FILE
    return load_kpi_settings(path)


def _catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)


def _build(args: argparse.Namespace, settings: Settings) -> int:
    written = write_files(rendered_files(_catalog(settings), _kpi(args.kpi), settings.influx), args.out)
    sys.stdout.write("".join(f"wrote {path}\n" for path in written))
    return 0


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    from citytelemetry.dashboards.preview import render_all
    from citytelemetry.dashboards.results import InfluxQuery

    parse_duration(args.last)
    influx = settings.influx
    client = InfluxQuery(influx.url, influx.database, influx.username,
                         influx.password.get_secret_value() if influx.password else None,
                         influx.token.get_secret_value() if influx.token else None, influx.timeout_s)
    dashboards = build_dashboards(_catalog(settings), _kpi(args.kpi))
    paths = render_all(dashboards, client, args.out, time_range=TimeRange(last=args.last), site=args.site)
    sys.stdout.write("".join(f"wrote {path}\n" for path in paths))
    return 0


def handle(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return _build(args, settings) if args.dashboards_action == "build" else _preview(args, settings)
    except (KpiError, KpiSourceError, ValueError) as exc:
        sys.stderr.write(f"citytelemetry dashboards: {exc}\n")
        return 2
