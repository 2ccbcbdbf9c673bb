"""Where ``citytelemetry run`` spends its CPU while it drains a W1 backlog: py-spy samples, top functions.

    .venv/bin/python -m bench.profile [--scale 0.5] [--workload W1] [--top 20] [--out bench/profiles/NAME.txt]

py-spy (``pip install py-spy`` into .venv) attaches to the running pipeline without pausing it
(``--nonblocking``), samples the active threads 100 times a second while the backlog drains, and this
module folds the stacks into self and inclusive shares of the samples, per function and per package.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

from bench.parts import Context, wait_landed
from bench.publish import publish_bulk
from bench.services import private_services
from bench.workload import workloads, write_profiles


def _py_spy() -> str:
    found = Path(sys.executable).with_name("py-spy")
    if found.exists():
        return str(found)
    which = shutil.which("py-spy")
    if which is None:
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return which


def _frame_name(frame: str) -> str:
    """``function (path/to/module.py)`` -> ``module.py:function`` with the package path kept short."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "python3.11/", "/src/", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{where}:{name}"


def _package(frame: str) -> str:
    where = _frame_name(frame).split(":", 1)[0]
    parts = where.split("/")
    if parts[0] == "citytelemetry" and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0].removesuffix(".py")


def fold(raw: str, top: int) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    packages_inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        total += count
        self_time[_frame_name(frames[-1])] += count
        for name in {_frame_name(f) for f in frames}:
            inclusive[name] += count
        packages[_package(frames[-1])] += count
        for package in {_package(f) for f in frames}:
            packages_inclusive[package] += count
    if total == 0:
        return "no samples"

    def table(title: str, counter: Counter[str]) -> list[str]:
        rows = [f"{title} ({total} samples)", ""]
        rows += [f"{100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(top)]
        return [*rows, ""]

    return "\n".join([*table("Self time by package (leaf frame)", packages),
                      *table("Inclusive time by package (any frame)", packages_inclusive),
                      *table("Self time by function", self_time),
                      *table("Inclusive time by function", inclusive)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--workload", choices=["W1", "W2"], default="W1")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the report here, and the folded stacks beside it (.folded, for flame graphs)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = next(w for w in workloads(args.scale) if w.name == args.workload)
    root = Path(tempfile.mkdtemp(prefix="ct-profile-"))
    try:
        synthetic_dirs = write_profiles(root / "profiles", work.devices)
        with private_services(root / "services") as services:
            ctx = Context(services, root / "work", uuid.uuid4().hex[:6], args.scale, synthetic_dirs)
            (root / "work").mkdir(parents=True, exist_ok=True)
            gen, path = ctx.workload(work)
            db, prefix = ctx.database("prof"), ctx.prefix("prof")
            proc = ctx.pipeline("prof", db, prefix)
            proc.start()
            proc.wait_ready()
            proc.stop()
            publish_bulk(services.mqtt_host, services.mqtt_port, path, prefix)
            raw_path = root / "profile.txt"
            with proc:
                proc.wait_ready()
                spy = subprocess.Popen([_py_spy(), "record", "--pid", str(proc.pid), "--rate", "100", "--format", "raw",
                                        "--nolineno", "--nonblocking", "--output", str(raw_path)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                landed = wait_landed(services.influx_url, db, gen.measurements, gen.points, timeout_s=600)
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            raw = raw_path.read_text()
            report = (f"citytelemetry run draining {work.name} (district: {gen.devices} devices of {gen.types} types, "
                      f"shipped rules and defaults): {landed.count}/{gen.points} points, {len(gen.messages)} "
                      f"messages\n\n" + fold(raw, args.top))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n", encoding="utf-8")
        args.out.with_suffix(".folded").write_text(raw, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
