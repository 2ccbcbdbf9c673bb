"""The ``citytelemetry`` command: run, demo, profiles check, services up|down|status, config show."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from citytelemetry.alerts.rulefiles import AlertRuleError
from citytelemetry.config import ConfigError, Settings, load_settings
from citytelemetry.profiles import Catalog, ProfileError, load_catalog
from citytelemetry.sink.spool import SpoolError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="citytelemetry", description=__doc__)
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML configuration file (default: ./citytelemetry.toml if present)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("run", help="consume MQTT telemetry, validate it, write it to InfluxDB")

    demo = commands.add_parser("demo", help="start local services, simulators and the pipeline; print a summary")
    demo.add_argument("--duration", type=float, default=60.0, help="wall-clock seconds to run (default 60)")
    demo.add_argument("--rate", type=float, default=300.0, help="simulated messages per second (default 300)")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--bad", type=int, default=24, help="malformed / out-of-range messages to inject")
    demo.add_argument("--keep-services", action="store_true", help="leave broker and database running after")

    profiles = commands.add_parser("profiles", help="device profiles and inventory")
    profiles.add_argument("action", choices=["check"])

    services = commands.add_parser("services", help="local mosquitto, InfluxDB and Alertmanager")
    services.add_argument("action", choices=["up", "down", "status"])

    config = commands.add_parser("config", help="configuration")
    config.add_argument("action", choices=["show"])

    from citytelemetry.dashboards.cli import add_commands as add_dashboard_commands

    add_dashboard_commands(commands)
    from citytelemetry.alerts.cli import add_commands as add_alert_commands

    add_alert_commands(commands)
    from citytelemetry.security.cli import add_commands as add_security_commands

    add_security_commands(commands)
    services.add_argument("--insecure-anonymous", action="store_true",
                          help="run the broker without credentials and ACLs (development only)")
    return parser


def _load_catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)


def _profiles_check(settings: Settings) -> int:
    catalog = _load_catalog(settings)
    by_system: dict[str, int] = {}
    for device in catalog.devices.values():
        by_system[device.system.value] = by_system.get(device.system.value, 0) + 1
    print(f"ok: {len(catalog.profiles)} device types, {len(catalog.devices)} devices "
          f"({', '.join(f'{k} {v}' for k, v in sorted(by_system.items()))})")
    return 0


async def _run_pipeline(settings: Settings) -> int:
    from citytelemetry.observability.gcpauses import GcPauseMeter, GcPauses, freeze_startup_objects
    from citytelemetry.pipeline import make_pipeline

    pipeline = make_pipeline(settings, _load_catalog(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, pipeline.stop)
    # This process is the pipeline's: what start-up built stays to the end, so collections skip it.
    frozen = freeze_startup_objects()
    pauses = pipeline.stats.gc = GcPauses()
    with GcPauseMeter(pauses):
        await pipeline.run()
    logging.getLogger("citytelemetry.pipeline").info(
        "garbage collector: %d objects frozen at start; %d full collections, longest pause %.0f ms, %.1f s of "
        "pauses in all", frozen, pauses.collections[2], pauses.longest_s[2] * 1000, sum(pauses.seconds))
    return 0


def _config_show(settings: Settings) -> int:
    # model_dump keeps SecretStr masked as '**********'
    print(json.dumps(settings.model_dump(mode="json"), indent=2, sort_keys=True))
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from citytelemetry.demo import run_demo

    return run_demo(settings, duration_s=args.duration, rate=args.rate, seed=args.seed, bad=args.bad,
                    keep_services=args.keep_services)


def _services(args: argparse.Namespace, settings: Settings) -> int:
    from citytelemetry.services import services_command

    return services_command(args.action, settings, anonymous=args.insecure_anonymous)


def _alerts(args: argparse.Namespace, settings: Settings) -> int:
    from citytelemetry.alerts.cli import handle

    return handle(args, settings)


def _security(args: argparse.Namespace, settings: Settings) -> int:
    from citytelemetry.security.cli import handle

    return handle(args, settings) or 0


def _dashboards(args: argparse.Namespace, settings: Settings) -> int:
    from citytelemetry.dashboards.cli import handle

    return handle(args, settings) or 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "run": lambda _args, settings: asyncio.run(_run_pipeline(settings)),
    "demo": _demo,
    "profiles": lambda _args, settings: _profiles_check(settings),
    "services": _services,
    "config": lambda _args, settings: _config_show(settings),
    "dashboards": _dashboards,
    "alerts": _alerts,
    "security": _security,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args, load_settings(args.config))
    except (ConfigError, ProfileError, SpoolError, AlertRuleError) as exc:
        print(f"citytelemetry: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
