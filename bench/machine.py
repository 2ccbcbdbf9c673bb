"""What the figures were measured on: date, machine, commit, command."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import citytelemetry

ROOT = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _version(binary: str, flag: str) -> str:
    try:
        out = subprocess.run([binary, flag], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def hot_path_compiled() -> bool:
    """scripts/compile_hotpath.py compiled the package (citytelemetry/compiled.py checks it is current)."""
    return (Path(citytelemetry.__file__).parent / "_compiled.json").exists()


def load_text() -> str:
    """The machine's load average and how many processes were running (others share this box)."""
    one, five, fifteen, running, _ = Path("/proc/loadavg").read_text().split()
    return f"load average {one} / {five} / {fifteen} (1 / 5 / 15 min), {running} running"


def describe(argv: list[str]) -> dict[str, str]:
    dirty = " (+ uncommitted changes)" if _git("status", "--porcelain", "--", "src", "bench") else ""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {_cpu_model()}, "
                   f"{_ram_gib():.0f} GiB RAM, {platform.system()} {platform.release()}",
        "software": f"Python {platform.python_version()}; "
                    f"{_version('/usr/sbin/mosquitto', '-h').replace('mosquitto version', 'mosquitto')}; "
                    f"{_version('influxd', 'version')}",
        "load": f"at the start: {load_text()}",
        "commit": _git("rev-parse", "--short", "HEAD") + dirty,
        "build": ("hot path compiled with mypyc (scripts/compile_hotpath.py)" if hot_path_compiled()
                  else "pure Python (no compiled hot path)"),
        "command": shlex.join([Path(sys.executable).relative_to(ROOT).as_posix()
                               if Path(sys.executable).is_relative_to(ROOT) else sys.executable,
                               "-m", "bench", *argv]),
    }
