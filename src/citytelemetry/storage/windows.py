"""Dirty windows: which (tier, measurement, device, window) must be (re)computed, kept across restarts.

The pipeline marks a window whenever it accepts a reading whose timestamp falls in it, late readings included:
``observe`` as it validates, ``commit`` once the sink has taken the message's lines (a mark taken before that
could be computed before its reading is even queued for InfluxDB). A window is due ``grace`` after it closes
(late ones at once); the rollup task takes due windows, computes them and gives them back if that failed. The
marks are checkpointed to a JSON file (atomically), so a stop mid-window loses none of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from citytelemetry.atomicfile import replace_file
from citytelemetry.records import Reading
from citytelemetry.storage.tiers import Tier

ALL_DEVICES = ""  # a mark for every device of the measurement (recomputing the last windows at start)
COMPACT_ABOVE = 100  # more marked devices than this in one window: one ALL_DEVICES mark instead
_VERSION = 1


class Mark(NamedTuple):
    tier: str
    measurement: str
    device: str  # ALL_DEVICES: every device
    start_ms: int


class DirtyWindows:
    __slots__ = ("_all_finest", "_all_tiers", "_finest", "_marks", "_measurements", "_pending", "_seen", "_tiers",
                 "_window_ms", "changed")

    def __init__(self, tiers_by_device: Mapping[str, Sequence[Tier]], measurements: Iterable[str]) -> None:
        self._tiers = {device: tuple((t.name, t.window_ms) for t in tiers) for device, tiers in tiers_by_device.items()}
        self._window_ms = {t.name: t.window_ms for tiers in tiers_by_device.values() for t in tiers}
        # A device added by `citytelemetry reload` (not known at start) rolls up into every tier.
        self._all_tiers = tuple(self._window_ms.items())
        self._measurements = frozenset(measurements)
        self._marks: set[Mark] = set()
        self._pending: set[Mark] = set()  # observed, lines not yet in the sink
        self.changed = False  # since the last checkpoint
        # Most readings fall in the window their device's last one marked. Per device, the start of its
        # finest window at its last mark: the same start means every tier's window is marked already (the
        # windows nest), so the reading costs a dict lookup instead of a tuple and a set insert per tier
        # (3.9k of 89k instructions per W1 message). Valid while marks only leave through take_due and
        # clear, which forget it. A device's readings carry one measurement (its type).
        self._finest = {device: _finest(tiers) for device, tiers in self._tiers.items()}
        self._all_finest = _finest(self._all_tiers)
        self._seen: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._marks)

    def observe(self, readings: Sequence[Reading]) -> None:
        """Accepted readings of one message (status records and types unknown at start are skipped)."""
        # Once per accepted reading: plain tuples (a NamedTuple costs a call each; they compare equal).
        add, measurements, tiers, every = self._pending.add, self._measurements, self._tiers, self._all_tiers
        finest_of, every_finest, seen = self._finest, self._all_finest, self._seen
        for reading in readings:
            measurement = reading.measurement
            if measurement not in measurements:
                continue
            ts, device = reading.timestamp_ms, reading.device_id
            finest = finest_of.get(device, every_finest)
            if finest:
                start = ts - ts % finest
                if seen.get(device) == start:
                    continue
                seen[device] = start
            for name, window in tiers.get(device, every):
                add((name, measurement, device, ts - ts % window))  # type: ignore[arg-type]

    def commit(self) -> None:
        """The sink has taken the lines of everything observed so far: those windows may be computed."""
        if self._pending:
            self._marks |= self._pending
            self._pending.clear()
            self.changed = True

    def mark_recent(self, now_ms: int, windows: int) -> None:
        """Every device's last ``windows`` windows of every tier (the current one included)."""
        for name, window in self._window_ms.items():
            current = now_ms - now_ms % window
            for measurement in self._measurements:
                for k in range(windows):
                    self._marks.add(Mark(name, measurement, ALL_DEVICES, current - k * window))
        self.changed = True

    def take_due(self, now_ms: int, grace_ms: int) -> list[Mark]:
        """Remove and return the marks of windows that closed at least ``grace_ms`` ago."""
        window_ms = self._window_ms
        due = [Mark(*m) for m in self._marks if m[3] + window_ms.get(m[0], 0) + grace_ms <= now_ms]
        self._marks.difference_update(due)
        if due:
            self.changed = True
            self._seen.clear()  # a window taken must be marked again by its next reading
        return due

    def clear(self) -> int:
        """Drop every mark (the tiers do not exist yet); returns how many were dropped."""
        dropped = len(self._marks) + len(self._pending)
        self._marks.clear()
        self._pending.clear()
        self._seen.clear()
        self.changed = True
        return dropped

    def restore(self, marks: Iterable[Mark]) -> None:
        """Give back marks that could not be computed; the next cycle tries again. Windows with many marked
        devices collapse into one mark for all of them, so an InfluxDB outage of a day keeps a few
        thousand marks, not one per device and window."""
        self._marks.update(m for m in marks if m.tier in self._window_ms)
        by_window: dict[tuple[str, str, int], list[Mark]] = {}
        for m in self._marks:
            by_window.setdefault((m[0], m[1], m[3]), []).append(m)
        for (tier, measurement, start), group in by_window.items():
            if len(group) > COMPACT_ABOVE:
                self._marks.difference_update(group)
                self._marks.add(Mark(tier, measurement, ALL_DEVICES, start))
        self.changed = True

    # -- checkpoint ------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        replace_file(path, json.dumps({"version": _VERSION, "marks": sorted(self._marks)}).encode(), mode=0o644)
        self.changed = False

    def load(self, path: Path) -> int:
        """Restore the marks of the last run; a missing file is an empty one. Returns how many."""
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except ValueError as exc:
            raise ValueError(f"{path}: not a rollup checkpoint ({exc})") from exc
        if not isinstance(body, dict) or body.get("version") != _VERSION:
            raise ValueError(f"{path}: not a version {_VERSION} rollup checkpoint")
        marks = [Mark(str(t), str(m), str(d), int(s)) for t, m, d, s in body["marks"]]
        self.restore(marks)
        return len(marks)


def _finest(tiers: Sequence[tuple[str, int]]) -> int:
    """The smallest window if every other is a multiple of it (they nest), else 0: no shortcut."""
    windows = [window for _, window in tiers]
    if not windows:
        return 0
    finest = min(windows)
    return finest if finest > 0 and all(w % finest == 0 for w in windows) else 0
