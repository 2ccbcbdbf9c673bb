"""``citytelemetry profiles check``: validate device_profiles/ (types and inventory), every error with file and key."""

from __future__ import annotations

import argparse
from collections import Counter

from citytelemetry.config import Settings
from citytelemetry.profiles import load_catalog


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    profiles = commands.add_parser("profiles", help="device profiles and inventory")
    profiles.add_argument("action", choices=["check"])


def handle(_args: argparse.Namespace, settings: Settings) -> int:
    catalog = load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)
    by_system = Counter(device.system.value for device in catalog.devices.values())
    print(f"ok: {len(catalog.profiles)} device types, {len(catalog.devices)} devices "
          f"({', '.join(f'{k} {v}' for k, v in sorted(by_system.items()))})")
    return 0
