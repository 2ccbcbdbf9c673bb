"""``citytelemetry check --topic T --payload FILE|-``: one message against the profiles, as a dry run.

Prints the line-protocol lines the pipeline would write for it and every refusal with its reason (as
``# refused ...`` comment lines, so the output stays line protocol); touches no broker and no database.
Fresh sequence state and no rate limit (validate/offline.py). Exit code 0 when nothing is refused, 1 when
something is, 2 for usage or configuration errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from citytelemetry.config import Settings
from citytelemetry.profiles import load_catalog
from citytelemetry.records import Rejection
from citytelemetry.validate.offline import check, offline_message, offline_validator

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dry = commands.add_parser("check", help="validate one message against the profiles, without broker or database")
    dry.add_argument("--topic", required=True, help="the MQTT topic it would arrive on")
    dry.add_argument("--payload", required=True, help="a file with the payload, or - for standard input")


def handle(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        payload = sys.stdin.buffer.read() if args.payload == "-" else Path(args.payload).read_bytes()
    except OSError as exc:
        sys.stderr.write(f"citytelemetry: --payload {args.payload}: {exc.strerror or exc}\n")
        return EXIT_USAGE
    catalog = load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)
    checked = check(offline_validator(settings, catalog), offline_message(args.topic, payload))
    out.writelines(line.decode() + "\n" for line in checked.lines)
    for rejection in checked.rejections:
        print(_refusal(rejection), file=out)
    if checked.rejections:
        print(f"# {len(checked.rejections)} refused: the pipeline would also write one ct_rejects point", file=out)
    return EXIT_REFUSED if checked.rejections else EXIT_OK


def _refusal(rejection: Rejection) -> str:
    where = "".join((f" field {rejection.measurement!r}" if rejection.measurement else "",
                     f" seq {rejection.seq}" if rejection.seq is not None else ""))
    return f"# refused {rejection.reason.value}{where}: {rejection.detail}"
