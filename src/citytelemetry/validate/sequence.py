"""Per-device sequence tracking: refuse duplicates and replays, accept a device restart.

A device numbers its readings with a strictly increasing ``seq``. If a lower ``seq`` arrives with a
*newer* device timestamp, the device restarted and lost its counter: we accept it and follow the new
numbering. A lower or equal ``seq`` with an older or equal timestamp is a duplicate or a replay.
"""

from __future__ import annotations

from citytelemetry.records import Reason


class SequenceTracker:
    __slots__ = ("_last", "restarts")

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}  # device -> (seq, timestamp_ms)
        self.restarts = 0

    def check(self, device_id: str, seq: int, timestamp_ms: int) -> Reason | None:
        """Return a rejection reason, or ``None`` and remember the reading as the device's latest."""
        last = self._last.get(device_id)
        if last is not None and seq <= last[0]:
            if timestamp_ms <= last[1]:
                return Reason.DUPLICATE_SEQUENCE if seq == last[0] else Reason.STALE_SEQUENCE
            self.restarts += 1
        self._last[device_id] = (seq, timestamp_ms)
        return None

    def last_seq(self, device_id: str) -> int | None:
        last = self._last.get(device_id)
        return None if last is None else last[0]
