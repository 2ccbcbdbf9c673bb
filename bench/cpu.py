"""Who used the cores during a measurement: per-process CPU seconds and the whole machine's busy time.

On the 2-core bench machine the pipeline, mosquitto and influxd share the cores; (c) and (d) report each
one's share so that a ratio like (d)/(c) can be read against what was left to scale into.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (fields 14 and 15 of /proc/PID/stat); 0.0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (nor waiting for I/O) since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    guest = sum(values[8:10]) if len(values) >= 10 else 0  # already counted in user and nice
    return (sum(values) - idle - guest) / CLK_TCK


@dataclass(slots=True)
class CoreShares:
    """Average cores used over one interval: by the named processes and by the whole machine."""

    by_name: dict[str, float]
    machine: float

    def text(self) -> str:
        parts = ", ".join(f"{name} {cores:.2f}" for name, cores in self.by_name.items())
        return f"cores busy: {parts}; machine {self.machine:.2f} of {os.cpu_count()}"


class CoreMeter:
    """Start it, let the work run, ``stop()``: average cores used by each pid and by the machine."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
        self._machine = machine_busy_seconds()
        self._at = time.monotonic()

    def stop(self) -> CoreShares:
        wall = max(time.monotonic() - self._at, 1e-9)
        used = {name: (process_cpu_seconds(pid) - self._start[name]) / wall for name, pid in self._pids.items()}
        return CoreShares(used, (machine_busy_seconds() - self._machine) / wall)


def wait_quiet(pids: dict[str, int], *, below_cores: float = 0.05, window_s: float = 1.0,
               timeout_s: float = 60.0) -> float:
    """Wait until every named process used less than ``below_cores`` over one ``window_s`` (influxd
    compacting what an earlier part wrote, say), so a part does not measure the one before it.
    Returns the seconds waited; gives up quietly after ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        meter = CoreMeter(pids)
        time.sleep(window_s)
        if all(cores < below_cores for cores in meter.stop().by_name.values()):
            break
    return time.monotonic() - started
