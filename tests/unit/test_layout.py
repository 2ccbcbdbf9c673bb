"""The package layout follows the data flow: imports run one way, and nothing below the CLI reaches up."""

from __future__ import annotations

import ast
from pathlib import Path

from citytelemetry.cli.main import COMMANDS, _parser

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "citytelemetry"
# The ground floor: what every stage shares. It imports nothing of ours but itself.
GROUND_FLOOR = {"records", "contracts", "topics", "measurements", "config", "envnames"}  # envnames: config's


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _library_modules() -> list[Path]:
    """Everything but the command line and its entry point (``python -m citytelemetry``)."""
    return [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"]


def test_no_library_module_imports_the_cli_or_the_simulators() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            name for name in _imports(path)
            if name.startswith(("citytelemetry.cli", "simulators")) or name in {"citytelemetry.cli", "simulators"})
        for path in _library_modules()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_ground_floor_imports_only_the_ground_floor() -> None:
    allowed = {f"citytelemetry.{name}" for name in GROUND_FLOOR}
    upward = {
        name: sorted(i for i in _imports(PACKAGE / f"{name}.py") if i.startswith("citytelemetry") and i not in allowed)
        for name in GROUND_FLOOR
    }
    assert {k: v for k, v in upward.items() if v} == {}


def test_help_lists_every_command() -> None:
    help_text = _parser().format_help()
    assert [name for name in COMMANDS if name not in help_text] == []
    assert set(COMMANDS) == {"run", "reload", "demo", "profiles", "services", "config", "dashboards", "alerts",
                             "security", "check", "deadletters", "storage", "export"}
