"""Drain bookkeeping: what of the spool is still owed to InfluxDB, in bytes and age.

The spool's bound applies to undrained bytes (drained data may still sit in a segment until the segment
is deleted). Bytes are tracked per commit group, so a group's bytes are released once its last record
is drained; after a restart the backlog is one group (its size an upper bound).
"""

from __future__ import annotations

from collections import deque


class DrainBook:
    __slots__ = ("_groups", "drained_id", "undrained_bytes")

    def __init__(self, drained_id: int) -> None:
        self._groups: deque[tuple[int, int, int]] = deque()  # commit groups: (last id, appended ms, bytes)
        self.drained_id = drained_id  # ids up to this one are in InfluxDB
        self.undrained_bytes = 0

    def committed(self, last_id: int, appended_ms: int, size: int) -> None:
        self._groups.append((last_id, appended_ms, size))
        self.undrained_bytes += size

    def drained(self, record_id: int) -> None:
        """Called in id order once a record's lines are in InfluxDB."""
        self.drained_id = record_id
        groups = self._groups
        while groups and groups[0][0] <= record_id:
            self.undrained_bytes -= groups.popleft()[2]

    def oldest_age_s(self, now_ms: int, last_committed: int) -> float:
        if not self._groups or self.drained_id >= last_committed:
            return 0.0
        return max(0.0, (now_ms - self._groups[0][1]) / 1000)
