"""Compiled hot-path modules (scripts/compile_hotpath.py): never stale, and one switch away from the sources.

Imported first by ``citytelemetry/__init__.py``, before any module it may concern.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PURE_PYTHON_ENV = "CITYTELEMETRY_PURE_PYTHON"


def use_compiled_modules_safely() -> None:
    """Compiled hot-path modules (scripts/compile_hotpath.py) sit beside their sources and shadow them.

    Refuse to run compiled code that no longer matches its source. With CITYTELEMETRY_PURE_PYTHON=1
    import the sources instead: the same code, interpreted (to compare, or to rule the compiler out).
    """
    manifest = Path(__file__).with_name("_compiled.json")
    if not manifest.exists():
        return
    src = Path(__file__).parent.parent
    modules: dict[str, str] = json.loads(manifest.read_text(encoding="utf-8"))["modules"]
    if os.environ.get(PURE_PYTHON_ENV) == "1":
        sources = {name.removesuffix(".py").replace("/", "."): src / name for name in modules}

        class _SourcesFirst(importlib.abc.MetaPathFinder):
            def find_spec(self, fullname: str, path: Sequence[str] | None,  # noqa: ARG002 - the finder protocol
                          target: ModuleType | None = None,  # noqa: ARG002
                          ) -> importlib.machinery.ModuleSpec | None:
                source = sources.get(fullname)
                return None if source is None else importlib.util.spec_from_file_location(fullname, source)

        sys.meta_path.insert(0, _SourcesFirst())
        return
    for name, digest in modules.items():
        source = src / name
        if source.exists() and hashlib.sha256(source.read_bytes()).hexdigest() != digest:
            raise ImportError(f"{source} changed after it was compiled with mypyc: run scripts/install (it "
                              f"recompiles), scripts/compile_hotpath.py --clean, or set {PURE_PYTHON_ENV}=1")

