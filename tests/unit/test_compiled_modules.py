"""The compiled hot path (scripts/compile_hotpath.py) can never run stale code, and is one switch away
from the sources. Each case imports citytelemetry in a fresh interpreter from a copy of the package."""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import citytelemetry

PACKAGE = Path(citytelemetry.__file__).parent
RECORDS = "citytelemetry/records.py"


def _copy_package(tmp_path: Path, recorded: str) -> Path:
    """The package's sources only, with a manifest that records ``recorded`` as records.py's hash."""
    root = tmp_path / "src"
    shutil.copytree(PACKAGE, root / "citytelemetry",
                    ignore=shutil.ignore_patterns("*.so", "_compiled.json", "__pycache__"))
    manifest = {"ext_suffix": importlib.machinery.EXTENSION_SUFFIXES[0], "modules": {RECORDS: recorded}}
    (root / "citytelemetry" / "_compiled.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def _import(root: Path, code: str, *, pure: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CITYTELEMETRY_PURE_PYTHON"}
    env["PYTHONPATH"] = str(root)
    if pure:
        env["CITYTELEMETRY_PURE_PYTHON"] = "1"
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def _digest(root: Path) -> str:
    return hashlib.sha256((root / RECORDS).read_bytes()).hexdigest()


def test_a_source_changed_after_compiling_refuses_to_import(tmp_path: Path) -> None:
    root = _copy_package(tmp_path, "0" * 64)
    result = _import(root, "import citytelemetry.records")
    assert result.returncode == 1
    assert f"ImportError: {root / RECORDS} changed after it was compiled with mypyc" in result.stderr


def test_sources_that_match_the_manifest_import(tmp_path: Path) -> None:
    root = _copy_package(tmp_path, "")
    root = _copy_package(tmp_path / "again", _digest(root))
    result = _import(root, "import citytelemetry.records as r; print(r.__file__)")
    assert (result.returncode, result.stdout.strip()) == (0, str(root / RECORDS))


def test_pure_python_switch_imports_the_source_of_a_shadowed_module(tmp_path: Path) -> None:
    # A package directory shadows a module of the same name, as a compiled extension does: it stands in
    # for the compiled records module here, so this runs without a C compiler.
    root = _copy_package(tmp_path, "")
    root = _copy_package(tmp_path / "again", _digest(root))
    shadow = root / "citytelemetry" / "records"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("SHADOW = True\n", encoding="utf-8")
    code = "import citytelemetry.records as r; print(r.__file__)"
    assert _import(root, code).stdout.strip() == str(shadow / "__init__.py")
    assert _import(root, code, pure=True).stdout.strip() == str(root / RECORDS)


def test_this_installation_is_consistently_compiled_or_pure() -> None:
    manifest = PACKAGE / "_compiled.json"
    compiled = sorted(p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.so"))
    if manifest.exists():  # scripts/install (the default): every listed module is compiled and current
        modules = json.loads(manifest.read_text(encoding="utf-8"))["modules"]
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        assert compiled == sorted(name.removesuffix(".py") + suffix for name in modules)
        for name, digest in modules.items():
            assert hashlib.sha256((PACKAGE.parent / name).read_bytes()).hexdigest() == digest
    else:  # CITYTELEMETRY_PURE_PYTHON=1 scripts/install
        assert compiled == []


def test_no_compiled_module_has_a_coroutine() -> None:
    # mypyc 2.4 mis-compiles await inside finally (scripts/compile_hotpath.py says how): what it compiles
    # must stay synchronous, the async shells stay interpreted.
    hot_modules = runpy.run_path(str(PACKAGE.parent.parent / "scripts" / "compile_hotpath.py"))["HOT_MODULES"]
    found = {}
    for name in hot_modules:
        tree = ast.parse((PACKAGE.parent / name).read_text(encoding="utf-8"))
        asynchronous = [node.lineno for node in ast.walk(tree)
                        if isinstance(node, ast.AsyncFunctionDef | ast.Await | ast.AsyncWith | ast.AsyncFor)]
        if asynchronous:
            found[name] = asynchronous
    assert len(hot_modules) >= 10
    assert found == {}
