"""One inbound message -> the lines for the sink, and what to do once they are durable.

The synchronous, per-message half of ``Pipeline.handle``: validation (guarded: a bug of ours becomes a
``processing_error`` dead letter, never a poison pill), line protocol, alert rules, rejection counting
and logging, and the acknowledgement callback. ``Pipeline`` awaits the sink with the result. Kept free
of coroutines so that scripts/compile_hotpath.py can compile it with mypyc.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from citytelemetry.contracts import AlertEvaluator, InboundMessage, OnDurable, Validator
from citytelemetry.ingest.broker import BrokerSource
from citytelemetry.measurements import DEVICE_STATUS
from citytelemetry.observability.completeness import CompletenessTracker
from citytelemetry.observability.ratelog import RateLimitedLog
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.profiles import Catalog
from citytelemetry.records import Outcome, Reading, Reason, Rejection
from citytelemetry.sink.deadletter import DeadLetterFormatter
from citytelemetry.sink.line_protocol import reading_line
from citytelemetry.validate.decode import excerpt

log = logging.getLogger("citytelemetry.pipeline")  # the operator's view: one logger for the pipeline

PublishNotice = Callable[[str, bytes], None]  # (reason code, dead-letter notice) to the live MQTT feed
ObserveReadings = Callable[[Sequence[Reading]], None]  # e.g. the rollups' dirty windows (storage/windows.py)


class MessageHandler:
    def __init__(self, catalog: Catalog, validator: Validator, stats: PipelineStats,
                 completeness: CompletenessTracker, dead: DeadLetterFormatter, *,
                 evaluator: AlertEvaluator | None = None, publish_notice: PublishNotice | None = None) -> None:
        # Any callable, not only MessageValidator: the poison-pill guard is tested with a failing one.
        self.validator = validator
        self.stats = stats
        self.completeness = completeness
        self.evaluator = evaluator
        self.rollup_windows: ObserveReadings | None = None  # marks the windows the readings fall in
        self.source: BrokerSource | None = None  # the connected source (None between connections): the
        # in-flight gauge here and the pipeline's dead-letter notices read it
        self._dead = dead
        self._publish_notice = publish_notice
        self._reject_log = RateLimitedLog(log)
        self._system_of = {device.id: device.system.value for device in catalog.devices.values()}

    def __call__(self, message: InboundMessage) -> tuple[list[bytes], OnDurable]:
        stats = self.stats
        stats.messages_received += 1
        outcome = self._validate(message)
        lines = []
        sequenced: list[tuple[str, int]] = []
        for reading in outcome.readings:
            lines.append(reading_line(reading))
            if reading.measurement != DEVICE_STATUS:
                sequenced.append((reading.device_id, reading.seq))
        # One message is one device (its topic), so one system: a plain count, not a Counter per message.
        system = self._system_of[sequenced[0][0]] if sequenced else ""
        if sequenced:
            stats.readings_accepted[system] += len(sequenced)
        if outcome.readings:
            self._observe(outcome.readings)
        for rejection in outcome.rejections:
            lines.append(self._dead.line(rejection, message.received_ms))
            self.count_rejection(rejection, message.received_ms)
        delivery = message.delivery
        completeness = self.completeness

        def on_durable() -> None:
            if sequenced:
                stats.readings_landed[system] += len(sequenced)
            for device_id, seq in sequenced:
                completeness.landed(device_id, seq)
            stats.messages_settled += 1
            delivery.settle()
            source = self.source
            if source is not None:
                stats.in_flight_messages = source.in_flight

        return lines, on_durable

    def _observe(self, readings: list[Reading]) -> None:
        """What else sees accepted readings: the alert rules, the rollups' dirty windows."""
        if self.evaluator is not None:
            self.evaluator.observe(readings)
        if self.rollup_windows is not None:
            self.rollup_windows(readings)

    def _validate(self, message: InboundMessage) -> Outcome:
        try:
            return self.validator(message)
        except Exception as exc:  # a bug of ours must not turn one message into a poison pill
            log.exception("validator failed on a message from %r", message.topic[:128])
            return Outcome(rejections=[Rejection(
                reason=Reason.PROCESSING_ERROR, detail=f"{type(exc).__name__}: {exc}"[:512], topic=message.topic,
                excerpt=excerpt(message.payload))])

    def count_rejection(self, rejection: Rejection, received_ms: int) -> None:
        """Count, log (rate-limited) and announce one rejection; its ct_rejects line is the caller's."""
        self.stats.rejections[rejection.reason.value] += 1
        if rejection.reason is Reason.DUPLICATE_SEQUENCE and rejection.device_id is not None:
            self.completeness.duplicate(rejection.device_id)
        system = self._system_of.get(rejection.device_id or "", "unknown")
        self.stats.rejections_by_system[system] += 1
        # %r: a topic or detail from a device must not be able to forge log lines
        self._reject_log.warning(rejection.reason.value, "rejected %s from %r: %r", rejection.reason.value,
                                 rejection.topic[:128], rejection.detail)
        if self._publish_notice is not None:
            self._publish_notice(rejection.reason.value, self._dead.notice(rejection, received_ms))

    def dead_letter(self, rejection: Rejection, received_ms: int) -> bytes:
        return self._dead.line(rejection, received_ms)

    def use_catalog(self, catalog: Catalog, validator: Validator, dead: DeadLetterFormatter) -> None:
        """Reload (run/reload.py): the next message meets the new catalog; called between two messages."""
        self.validator, self._dead = validator, dead
        self._system_of = {device.id: device.system.value for device in catalog.devices.values()}
