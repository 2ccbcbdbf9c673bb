"""Lines InfluxDB refused although we built them: each becomes a ``write_rejected`` dead letter.

A refused dead letter is not dead-lettered again (that could loop); it is logged.
"""

from __future__ import annotations

import logging
import time

from citytelemetry.contracts import Sink
from citytelemetry.measurements import REJECTS
from citytelemetry.records import Reason, Rejection
from citytelemetry.run.handler import MessageHandler

log = logging.getLogger("citytelemetry.pipeline")

_REJECTS_PREFIX = REJECTS.encode() + b","


class RefusedLines:
    """``on_refused`` of the buffered sink; bound to the sink after both exist (they refer to each other)."""

    def __init__(self, handler: MessageHandler) -> None:
        self._handler = handler
        self.sink: Sink | None = None

    def __call__(self, line: bytes, server_message: str) -> None:
        if line.startswith(_REJECTS_PREFIX):
            log.error("InfluxDB refused a dead-letter record (%s): %r", server_message, line[:300])
            return
        rejection = Rejection(reason=Reason.WRITE_REJECTED, detail=server_message[:512], topic="",
                              excerpt=line[:256].decode(errors="replace"))
        now_ms = time.time_ns() // 1_000_000
        if self.sink is not None:
            self.sink.put_nowait([self._handler.dead_letter(rejection, now_ms)])
        self._handler.count_rejection(rejection, now_ms)
