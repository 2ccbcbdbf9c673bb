"""Lines InfluxDB refused although we built them: counted by kind, kept on disk, never dropped silently.

The line protocol module keeps every value in range, so this should stay at zero; when it does not
(a field type conflict with data written by another tool, a server with other limits), the line is
counted (``citytelemetry_records_refused{kind}``), kept whole in the dead-letter store for inspection
(``citytelemetry deadletters list --kind line``), and dead-lettered as ``write_rejected`` too, so that
InfluxDB tells of it. A refused dead letter is not dead-lettered again: that could loop.
"""

from __future__ import annotations

from collections import Counter

from citytelemetry.deadletters.store import DeadLetterStore
from citytelemetry.records import Reason, Rejection

_KINDS = (  # measurement of the line -> what we call the record
    (b"ct_rejects", "deadletter"), (b"ct_pipeline", "selfmetrics"), (b"ct_completeness", "completeness"),
    (b"ct_alerts", "alerts"),
)


def record_kind(line: bytes) -> str:
    measurement = line.split(b" ", 1)[0].split(b",", 1)[0]
    for prefix, kind in _KINDS:
        if measurement == prefix or (kind == "selfmetrics" and measurement.startswith(prefix + b"_")):
            return kind
    return "reading"  # device types and ct_device_status


class RefusedLines:
    __slots__ = ("_store", "by_kind")

    def __init__(self, store: DeadLetterStore | None = None, by_kind: Counter[str] | None = None) -> None:
        self._store = store
        self.by_kind: Counter[str] = Counter() if by_kind is None else by_kind  # PipelineStats.records_refused

    def __call__(self, line: bytes, server_message: str, now_ms: int) -> Rejection | None:
        """Count and keep ``line``; the ``write_rejected`` rejection to dead-letter (None for a dead letter)."""
        kind = record_kind(line)
        self.by_kind[kind] += 1
        if self._store is not None:
            self._store.add_line(line, record=kind, server_message=server_message, received_ms=now_ms)
        if kind == "deadletter":
            return None
        return Rejection(reason=Reason.WRITE_REJECTED, detail=server_message[:512], topic="",
                         excerpt=line[:256].decode(errors="replace"))
