"""Lines InfluxDB refused although we built them: counted by kind, kept on disk, never dropped silently.

The line protocol module keeps every value in range (sink/line_protocol.py), so this should stay at
zero; when it does not (a field type conflict with data another tool wrote, a server with other limits),
the line is counted (``citytelemetry_records_refused_total{kind}``), kept whole in the dead-letter store
(``citytelemetry deadletters list --kind line``) and logged, and it becomes a ``write_rejected`` dead
letter so that InfluxDB tells of it too. A refused dead letter is not dead-lettered again: that could loop.
"""

from __future__ import annotations

import logging
import time

from citytelemetry.contracts import Sink
from citytelemetry.deadletters.store import DeadLetterStore
from citytelemetry.measurements import ALERTS, COMPLETENESS, PIPELINE, PIPELINE_REJECTS, REJECTS
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.records import Reason, Rejection
from citytelemetry.run.handler import MessageHandler

log = logging.getLogger("citytelemetry.pipeline")

_KINDS = {REJECTS.encode(): "deadletter", PIPELINE.encode(): "selfmetrics", PIPELINE_REJECTS.encode(): "selfmetrics",
          COMPLETENESS.encode(): "completeness", ALERTS.encode(): "alerts"}


def record_kind(line: bytes) -> str:
    """``deadletter``, ``selfmetrics``, ``completeness``, ``alerts``, else ``reading`` (incl. device status)."""
    measurement = line.split(b" ", 1)[0].split(b",", 1)[0]
    return _KINDS.get(measurement, "reading")


class RefusedLines:
    """``on_refused`` of the buffered sink; bound to the sink after both exist (they refer to each other)."""

    def __init__(self, handler: MessageHandler, stats: PipelineStats, store: DeadLetterStore | None = None) -> None:
        self._handler = handler
        self._by_kind = stats.records_refused
        self._store = store
        self.sink: Sink | None = None

    def __call__(self, line: bytes, server_message: str) -> None:
        kind = record_kind(line)
        self._by_kind[kind] += 1
        now_ms = time.time_ns() // 1_000_000
        if self._store is not None:
            self._store.add_line(line, record=kind, server_message=server_message, received_ms=now_ms)
        log.error("InfluxDB refused a %s line we built (%s): %r", kind, server_message[:300], line[:300])
        if kind == "deadletter":
            return
        rejection = Rejection(reason=Reason.WRITE_REJECTED, detail=server_message[:512], topic="",
                              excerpt=line[:256].decode(errors="replace"))
        dead_line = self._handler.dead_letter(rejection, now_ms)
        if self.sink is not None:
            self.sink.put_nowait([dead_line])
