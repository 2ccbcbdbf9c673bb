"""``citytelemetry config show``: the effective configuration (file + environment), secrets masked."""

from __future__ import annotations

import argparse
import json

from citytelemetry.config import Settings


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = commands.add_parser("config", help="configuration")
    config.add_argument("action", choices=["show"])


def handle(_args: argparse.Namespace, settings: Settings) -> int:
    # model_dump keeps SecretStr masked as '**********'
    print(json.dumps(settings.model_dump(mode="json"), indent=2, sort_keys=True))
    return 0
