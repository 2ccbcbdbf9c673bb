"""``citytelemetry run``: the pipeline in the foreground until SIGINT / SIGTERM (flush, acknowledge, exit).

SIGHUP reloads device profiles, inventory and alert rules (run/reload.py); it no longer ends the process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from citytelemetry.config import Settings, load_settings
from citytelemetry.ingest.watch import BrokerGaveUpError
from citytelemetry.profiles import load_catalog


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands.add_parser("run", help="consume MQTT telemetry, validate it, write it to InfluxDB")


def handle(args: argparse.Namespace, settings: Settings) -> int:
    # Until the loop's handler is in place (the catalog loads first), a SIGHUP must not end the process.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return asyncio.run(_run_pipeline(settings, args.config))


async def _run_pipeline(settings: Settings, config_file: Path | None) -> int:
    from citytelemetry.observability.gcpauses import GcPauseMeter, GcPauses, freeze_startup_objects
    from citytelemetry.run import make_pipeline

    pipeline = make_pipeline(settings, load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir),
                             reread_settings=lambda: load_settings(config_file))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, pipeline.stop)
    loop.add_signal_handler(signal.SIGHUP, pipeline.request_reload)
    # This process is the pipeline's: what start-up built stays to the end, so collections skip it.
    frozen = freeze_startup_objects(settings.pipeline.gc_young_objects)
    pauses = pipeline.stats.gc = GcPauses()
    with GcPauseMeter(pauses):
        try:
            await pipeline.run()
        except BrokerGaveUpError as exc:  # bad credentials and the like: retrying would hide the failure
            logging.getLogger("citytelemetry.pipeline").error("stopped: %s", exc)  # noqa: TRY400 - it says all
            return 3
    logging.getLogger("citytelemetry.pipeline").info(
        "garbage collector: %d objects frozen at start; %d full collections, longest pause %.0f ms, %.1f s of "
        "pauses in all", frozen, pauses.collections[2], pauses.longest_s[2] * 1000, sum(pauses.seconds))
    return 0
