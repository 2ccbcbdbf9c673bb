"""Committed spool records kept in memory for the feeder, bounded by lines, and a group's callbacks.

Fresh records travel to InfluxDB from here; once the bound is reached the rest are read back from disk
(``SpooledSink``). Compiled with mypyc (scripts/compile_hotpath.py): every record passes through here
once, and these loops (numbering a group, keeping it, settling it, taking it back) ran interpreted per
record before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

Group = Sequence[tuple[Sequence[bytes], Callable[[], None] | None]]  # a commit group: (lines, on_durable)


def settle(group: Group) -> None:
    """Fire the callbacks of a durable group, in order."""
    for _, on_durable in group:
        if on_durable is not None:
            on_durable()


class RecentRecords:
    __slots__ = ("_records", "limit_lines", "lines")

    def __init__(self, limit_lines: int) -> None:
        self._records: deque[tuple[int, Sequence[bytes]]] = deque()
        self.limit_lines = limit_lines
        self.lines = 0

    def keep(self, first_id: int, group: Group) -> None:
        """A committed group (ids from ``first_id`` on): kept until the bound, the rest left on disk."""
        record_id = first_id
        for lines, _ in group:
            if self.lines >= self.limit_lines:
                return  # the feeder reads these back from disk
            self._records.append((record_id, lines))
            self.lines += len(lines)
            record_id += 1

    def take(self, next_id: int) -> list[tuple[int, Sequence[bytes]]]:
        """The consecutive records from ``next_id`` on that are in memory ([] if ``next_id`` is not:
        it is on disk only); older ones are dropped (already fed)."""
        records = self._records
        while records and records[0][0] < next_id:
            self.lines -= len(records.popleft()[1])
        batch: list[tuple[int, Sequence[bytes]]] = []
        while records and records[0][0] == next_id:
            record = records.popleft()
            self.lines -= len(record[1])
            batch.append(record)
            next_id += 1
        return batch


def joined_lines(records: list[tuple[int, Sequence[bytes]]]) -> Sequence[bytes]:
    """Every line of ``records``, in order (one record: its own list)."""
    if len(records) == 1:
        return records[0][1]
    out: list[bytes] = []
    for _, lines in records:
        out.extend(lines)
    return out
