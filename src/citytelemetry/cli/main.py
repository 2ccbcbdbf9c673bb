"""The ``citytelemetry`` command: one module per command group in this package, each with
``add_commands(subparsers)`` and ``handle(args, settings) -> exit code``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from citytelemetry import __version__
from citytelemetry.alerts.rulefiles import AlertRuleError
from citytelemetry.config import ConfigError, load_settings
from citytelemetry.deadletters.store import DeadLetterStoreError
from citytelemetry.profiles import ProfileError
from citytelemetry.sink.spool import SpoolError

# Command name -> module of this package; the order is the order of --help.
COMMANDS = {
    "run": "run", "reload": "reload", "demo": "demo", "profiles": "profiles", "services": "services",
    "config": "config", "dashboards": "dashboards", "alerts": "alerts", "security": "security",
    "check": "check", "deadletters": "deadletters",
    "storage": "storage", "export": "export",
}
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a program killed by it


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"citytelemetry.cli.{COMMANDS[name]}")


def _global_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    """--config and --log-level, before or after any (sub)command; a later one wins."""
    parser.add_argument("--config", type=Path, default=default,
                        help="TOML configuration file (default: ./citytelemetry.toml if present)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=default, help="default INFO")


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public walk of its tree
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            yield from action.choices.items()


def _words(parser: argparse.ArgumentParser) -> str:
    """``check``, ``up|down|status``, ``list|replay|firing``: what follows a command."""
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return "|".join(action.choices)
        if not action.option_strings and action.choices is not None:
            return "|".join(str(choice) for choice in action.choices)
    return ""


def _listing(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> str:
    rows = []
    for action in commands._choices_actions:  # noqa: SLF001 - the help text of each command
        words = _words(commands.choices[action.dest])
        rows.append((f"{action.dest} {words}".strip(), action.help or ""))
    width = 26
    lines = []
    for name, text in rows:  # a long list of words gets the help on a line of its own
        lines += [f"  {name:<{width}}  {text}"] if len(name) <= width else [f"  {name}", f"  {'':<{width}}  {text}"]
    return "commands:\n" + "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citytelemetry", formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="citytelemetry [--version] [--config FILE] [--log-level LEVEL] COMMAND ...",
        description="MQTT telemetry -> validation against device profiles -> InfluxDB, Grafana, Alertmanager.",
        epilog="Each command has its own --help (citytelemetry alerts replay --help). "
               "Environment: CITYTELEMETRY_<SECTION>__<KEY> overrides the file.")
    parser.add_argument("--version", action="version", version=f"citytelemetry {__version__}")
    _global_options(parser, default=None)
    # The listing below names every command with what follows it; argparse's own would repeat the names.
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS)
    for name in COMMANDS:
        _module(name).add_commands(commands)
    pending = list(_subparsers(parser))
    while pending:
        _, sub = pending.pop()
        _global_options(sub, default=argparse.SUPPRESS)  # set only when given there
        pending += _subparsers(sub)
    parser.description = f"{parser.description}\n\n{_listing(commands)}"
    return parser


def _quiet_broken_pipe() -> int:
    """stdout went away (``citytelemetry alerts list | head``): no traceback, and none at exit either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        logging.basicConfig(level=args.log_level or "INFO",
                            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        try:
            code: int = _module(args.command).handle(args, load_settings(args.config))
        except (ConfigError, ProfileError, SpoolError, AlertRuleError, DeadLetterStoreError) as exc:
            print(f"citytelemetry: {exc}", file=sys.stderr)
            return 2
        sys.stdout.flush()  # inside the guard: a pipe closed early fails here, not at interpreter exit
    except BrokenPipeError:
        return _quiet_broken_pipe()
    return code


if __name__ == "__main__":
    sys.exit(main())
