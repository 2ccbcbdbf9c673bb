"""The ``citytelemetry`` command: one module per command group in this package, each with
``add_commands(subparsers)`` and ``handle(args, settings) -> exit code``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from types import ModuleType

from citytelemetry.alerts.rulefiles import AlertRuleError
from citytelemetry.config import ConfigError, load_settings
from citytelemetry.profiles import ProfileError
from citytelemetry.sink.spool import SpoolError

# Command name -> module of this package; the order is the order of --help.
COMMANDS = {
    "run": "run", "demo": "demo", "profiles": "profiles", "services": "services", "config": "config",
    "dashboards": "dashboards", "alerts": "alerts", "security": "security",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"citytelemetry.cli.{COMMANDS[name]}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citytelemetry",
        description="MQTT telemetry -> validation against device profiles -> InfluxDB, Grafana, Alertmanager.")
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML configuration file (default: ./citytelemetry.toml if present)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        _module(name).add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        code: int = _module(args.command).handle(args, load_settings(args.config))
    except (ConfigError, ProfileError, SpoolError, AlertRuleError) as exc:
        print(f"citytelemetry: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
