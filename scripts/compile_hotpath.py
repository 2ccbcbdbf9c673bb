"""Compile the hot-path modules with mypyc, in place in src/, so each reading costs about half the CPU.

    .venv/bin/python scripts/compile_hotpath.py           # compile what changed (a no-op when up to date)
    .venv/bin/python scripts/compile_hotpath.py --clean   # remove the compiled modules: pure Python again
    .venv/bin/python scripts/compile_hotpath.py --check   # exit 1 unless the compiled modules match src/

Why mypyc: the per-reading work (validation, alert rules, line protocol, batching) is many small typed
calls that CPython interprets one bytecode at a time; profiling found no single stage to cut
(docs/performance.md). mypyc compiles the same strictly typed source to C extension modules: the
project's own mypy configuration is the contract, nothing is rewritten. black and mypy ship this way.

The extension modules sit beside their sources (src/ is on sys.path through the editable install), so
a compiled module would shadow an edited source. ``src/citytelemetry/_compiled.json`` records the
sha256 of every compiled source; ``citytelemetry/__init__.py`` refuses to start on a mismatch, and
scripts/install recompiles when sources change. Set CITYTELEMETRY_PURE_PYTHON=1 for scripts/install to
keep the package pure Python (the code paths are identical; only speed differs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MANIFEST = SRC / "citytelemetry" / "_compiled.json"
GROUP = "citytelemetry_hotpath"  # the name of mypyc's shared runtime library, at the top of src/

# The modules every message passes through, measured with bench.hotpath. Only modules without
# coroutines: mypyc 2.4 mis-compiles an ``await`` inside ``finally`` (after one call of such a coroutine
# is cancelled, a later call of the same function re-raises that CancelledError at its end; reproduced
# with a 20-line module, and it broke tests/unit/test_spool.py). So the per-message work of the async
# classes lives in sync modules of its own (run/handler.py, alerts/observer.py), compiled here, and the
# async shells (run/lifecycle.py, sink/buffer.py, alerts/evaluator.py) stay interpreted.
HOT_MODULES = (
    "citytelemetry/records.py",
    "citytelemetry/validate/decode.py",
    "citytelemetry/validate/fields.py",
    "citytelemetry/validate/ratelimit.py",
    "citytelemetry/validate/sequence.py",
    "citytelemetry/validate/validator.py",
    "citytelemetry/sink/line_protocol.py",
    "citytelemetry/alerts/clock.py",
    "citytelemetry/alerts/lifecycle.py",
    "citytelemetry/alerts/rules.py",
    "citytelemetry/alerts/observer.py",
    "citytelemetry/observability/completeness.py",
    "citytelemetry/observability/ratelog.py",
    "citytelemetry/observability/stats.py",
    "citytelemetry/run/handler.py",
    "citytelemetry/run/journal.py",  # the device-state journal, a line per reading landed
    # Per message too, each a few interpreted calls a message before (W1 in process, see docs/performance.md):
    "citytelemetry/ingest/acks.py",  # a ticket per message, settled in order
    "citytelemetry/ingest/inbox.py",  # received packets -> messages, in bulk
    "citytelemetry/storage/windows.py",  # the rollups' dirty windows, marked per reading
    "citytelemetry/sink/spool/records.py",  # the spool's record encoding, per message
    "citytelemetry/sink/spool/recent.py",  # committed records on their way to the feeder, per message
)


def source_hashes() -> dict[str, str]:
    return {name: hashlib.sha256((SRC / name).read_bytes()).hexdigest() for name in HOT_MODULES}


def _suffix() -> str:
    return str(sysconfig.get_config_var("EXT_SUFFIX"))


def _artifacts() -> list[Path]:
    suffix = _suffix()
    found = [(SRC / name).with_name(Path(name).stem + suffix) for name in HOT_MODULES]
    return [*found, *SRC.glob(f"{GROUP}__mypyc*")]


def manifest_matches() -> bool:
    if not MANIFEST.exists():
        return False
    recorded = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return (recorded.get("modules") == source_hashes() and recorded.get("ext_suffix") == _suffix()
            and all(path.exists() for path in _artifacts()))


def clean() -> None:
    for path in [*_artifacts(), MANIFEST]:
        path.unlink(missing_ok=True)
    for stale in SRC.rglob(f"*{_suffix()}"):  # modules dropped from HOT_MODULES since the last build
        if stale.with_name(stale.name.removesuffix(_suffix()) + ".py").exists() or stale.name.startswith(GROUP):
            stale.unlink()


_SETUP = """
import sys
from mypyc.build import mypycify
from setuptools import setup
setup(name="citytelemetry-hotpath", script_args=["build_ext", "--inplace", "--build-temp", sys.argv[1],
                                                   "--build-lib", sys.argv[1] + "/lib"],
      ext_modules=mypycify(sys.argv[2:], opt_level="3", group_name="{group}", target_dir=sys.argv[1]))
"""


def compile_modules() -> None:
    clean()  # never leave a mix of old and new extension modules
    with tempfile.TemporaryDirectory(prefix="ct-mypyc-") as tmp:
        setup = Path(tmp) / "setup_hotpath.py"
        setup.write_text(_SETUP.format(group=GROUP), encoding="utf-8")
        # cwd = src: module names follow the paths; mypy reads the project's configuration from the root.
        env = {**os.environ, "MYPY_CACHE_DIR": str(Path(tmp) / "mypy_cache")}
        result = subprocess.run([sys.executable, str(setup), str(Path(tmp) / "build"), *HOT_MODULES],
                                cwd=SRC, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            clean()
            raise SystemExit(f"mypyc failed; the package stays pure Python:\n{result.stdout[-4000:]}"
                             f"{result.stderr[-4000:]}")
    MANIFEST.write_text(json.dumps({"ext_suffix": _suffix(), "modules": source_hashes()}, indent=1) + "\n",
                        encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--clean", action="store_true", help="remove the compiled modules")
    mode.add_argument("--check", action="store_true", help="exit 1 unless compiled and current")
    args = parser.parse_args(argv)
    if args.clean:
        clean()
        print("compile_hotpath: removed the compiled modules; citytelemetry is pure Python")
        return 0
    if args.check:
        current = manifest_matches()
        print(f"compile_hotpath: {'compiled and current' if current else 'not compiled, or sources changed'}")
        return 0 if current else 1
    if manifest_matches():
        print("compile_hotpath: compiled modules are current")
        return 0
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        raise SystemExit("compile_hotpath: no C compiler (gcc); install it or set CITYTELEMETRY_PURE_PYTHON=1")
    print(f"compile_hotpath: compiling {len(HOT_MODULES)} modules with mypyc (about a minute)", flush=True)
    compile_modules()
    print(f"compile_hotpath: compiled {len(HOT_MODULES)} modules with mypyc")
    return 0


if __name__ == "__main__":
    sys.exit(main())
