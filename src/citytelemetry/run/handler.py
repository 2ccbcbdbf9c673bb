"""One inbound message -> the lines for the sink, and what to do once they are durable.

The synchronous, per-message half of ``Pipeline.handle``: validation (guarded: a bug of ours becomes a
``processing_error`` dead letter, never a poison pill), line protocol, alert rules, rejection counting
and logging, one dead letter per refused message (``deadletters.outlet``: budgeted per device), and the
acknowledgement callback. ``Pipeline`` awaits the sink with the result. Kept free
of coroutines so that scripts/compile_hotpath.py can compile it with mypyc.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

from citytelemetry.contracts import AlertEvaluator, Delivery, InboundMessage, OnDurable, Sink, Validator
from citytelemetry.deadletters.outlet import DeadLetterOutlet
from citytelemetry.deadletters.summary import DeadLetter, summarize
from citytelemetry.ingest.broker import BrokerSource
from citytelemetry.measurements import DEVICE_STATUS
from citytelemetry.observability.completeness import CompletenessTracker
from citytelemetry.observability.ratelog import RateLimitedLog
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.profiles import Catalog
from citytelemetry.records import Outcome, Reading, Reason, Rejection
from citytelemetry.run.journal import Journal
from citytelemetry.sink.deadletter import DeadLetterFormatter
from citytelemetry.sink.line_protocol import LineRangeError, reading_line
from citytelemetry.validate.decode import excerpt

log = logging.getLogger("citytelemetry.pipeline")  # the operator's view: one logger for the pipeline

ObserveReadings = Callable[[Sequence[Reading]], None]  # e.g. the rollups' dirty windows (storage/windows.py)


class Landing:
    """What one message owes once its lines are durable (its ``on_durable``): the device-state of its
    sequenced readings (``marks``: seq and device time, flat), its count, its acknowledgement.

    One native object instead of a closure and its environment, and flat marks instead of a tuple per
    reading: while a backlog drains ~2,000 messages wait for the spool's fsync, and each young collection
    walks all of them (W1: 7 tracked objects a message became 5, W2: 16 became 5)."""

    def __init__(self, handler: MessageHandler, delivery: Delivery, marks: list[int], device_id: str,
                 system: str) -> None:
        self.handler = handler
        self.delivery = delivery
        self.marks = marks
        self.device_id = device_id  # "" when nothing is sequenced (status only, or all refused)
        self.system = system

    def __call__(self) -> None:
        handler = self.handler
        if self.marks:
            handler.landed(self)
        stats = handler.stats
        stats.messages_settled += 1
        self.delivery.settle()
        source = handler.source
        if source is not None:
            stats.in_flight_messages = source.in_flight

    def readings(self) -> list[tuple[str, int, int]]:
        """(device, seq, device time) of each sequenced reading: for the device-state checkpoint."""
        marks, device_id = self.marks, self.device_id
        return [(device_id, marks[i], marks[i + 1]) for i in range(0, len(marks), 2)]


class MessageHandler:
    def __init__(self, catalog: Catalog, validator: Validator, stats: PipelineStats,
                 completeness: CompletenessTracker, outlet: DeadLetterOutlet, *,
                 evaluator: AlertEvaluator | None = None) -> None:
        # Any callable, not only MessageValidator: the poison-pill guard is tested with a failing one.
        self.validator = validator
        self.stats = stats
        self.completeness = completeness
        self.evaluator = evaluator
        self.rollup_windows: ObserveReadings | None = None  # marks the windows the readings fall in
        self.source: BrokerSource | None = None  # the connected source (None between connections): the
        # in-flight gauge here and the pipeline's dead-letter notices read it
        self._outlet = outlet
        self._reject_log = RateLimitedLog(log)
        self._system_of = {device.id: device.system.value for device in catalog.devices.values()}
        # Readings accepted and not yet durable (so not acknowledged), oldest first: the device-state
        # checkpoint leaves them out, since the broker redelivers them after a crash (run/checkpoint.py).
        self.pending: deque[Landing] = deque()
        self.journal: Journal | None = None  # readings made durable, recorded before their PUBACKs

    def __call__(self, message: InboundMessage) -> tuple[list[bytes], OnDurable]:
        return self.handle(message)

    def hand_over(self, messages: list[InboundMessage], start: int, sink: Sink, until: float) -> int:
        """Handle ``messages[start:]`` and put their lines into ``sink`` in one call, until the pump's
        time slice ends at ``until`` (monotonic); returns the index of the first message not handled.
        The pump checks ``sink.full()`` before: a batch may overshoot the bound by its own size."""
        handled: list[tuple[Sequence[bytes], OnDurable]] = []
        index, end = start, len(messages)
        try:
            while index < end:
                handled.append(self.handle(messages[index]))
                index += 1
                if time.monotonic() >= until:
                    break
        finally:  # should a bug of ours raise, what was handled before it still reaches the sink
            sink.put_many_nowait(handled)
        return index

    def handle(self, message: InboundMessage) -> tuple[list[bytes], OnDurable]:
        stats = self.stats
        stats.messages_received += 1
        outcome = self._validate(message)
        lines, marks = self._reading_lines(outcome, message)
        if marks:
            # One message is one device (its topic), so one system: a plain count, not a Counter per message.
            device_id = outcome.readings[0].device_id
            system = self._system_of[device_id]
            landing = Landing(self, message.delivery, marks, device_id, system)
            accepted = stats.readings_accepted
            accepted[system] = accepted.get(system, 0) + len(marks) // 2
            self.pending.append(landing)
        else:
            landing = Landing(self, message.delivery, marks, "", "")
        if outcome.readings:
            self._observe(outcome.readings)
        if outcome.rejections:  # one dead letter for the message, however many refusals it holds
            dead = summarize(outcome.rejections)
            self.count_refusals(dead)
            dead_line = self._outlet(message, dead)
            if dead_line is not None:
                lines.append(dead_line)
        return lines, landing

    def _observe(self, readings: list[Reading]) -> None:
        """What else sees accepted readings: the alert rules, the rollups' dirty windows."""
        if self.evaluator is not None:
            self.evaluator.observe(readings)
        if self.rollup_windows is not None:
            self.rollup_windows(readings)

    def landed(self, landing: Landing) -> None:
        """``landing``'s readings are durable: completeness and the journal count them, in handled order."""
        marks = landing.marks
        device_id, system = landing.device_id, landing.system
        landed = self.stats.readings_landed
        landed[system] = landed.get(system, 0) + len(marks) // 2
        completeness, journal = self.completeness, self.journal
        for i in range(0, len(marks), 2):
            completeness.landed(device_id, marks[i], marks[i + 1])
            if journal is not None:
                journal.record(device_id, marks[i], marks[i + 1])
        pending = self.pending
        if pending and pending[0] is landing:  # settled in the order handled: always, in practice
            pending.popleft()
        else:
            pending.remove(landing)

    def _validate(self, message: InboundMessage) -> Outcome:
        try:
            return self.validator(message)
        except Exception as exc:  # a bug of ours must not turn one message into a poison pill
            log.exception("validator failed on a message from %r", message.topic[:128])
            return Outcome(rejections=[Rejection(
                reason=Reason.PROCESSING_ERROR, detail=f"{type(exc).__name__}: {exc}"[:512], topic=message.topic,
                excerpt=excerpt(message.payload))])

    @staticmethod
    def _reading_lines(outcome: Outcome, message: InboundMessage) -> tuple[list[bytes], list[int]]:
        """The lines, and (seq, device time) of each sequenced reading, flat: ``[seq, ms, seq, ms, ...]``."""
        lines = []
        marks: list[int] = []
        for reading in outcome.readings:  # a reading refused here leaves a new list behind: this one goes on
            try:
                lines.append(reading_line(reading))
            except LineRangeError as exc:  # the validator should have refused it: refuse it here, not InfluxDB
                _refuse_unwritable(outcome, reading, exc, message)
                continue
            if reading.measurement != DEVICE_STATUS:
                marks.append(reading.seq)
                marks.append(reading.timestamp_ms)
        return lines, marks

    def count_refusals(self, dead: DeadLetter) -> None:
        """Count every refusal of one message by reason and system, and log the message (rate-limited)."""
        rejections = self.stats.rejections
        for reason, count in dead.counts:
            rejections[reason.value] += count
            if reason is Reason.DUPLICATE_SEQUENCE and dead.device_id is not None:
                for _ in range(count):
                    self.completeness.duplicate(dead.device_id)
        self.stats.rejections_by_system[self._system_of.get(dead.device_id or "", "unknown")] += dead.total
        # %r: a topic or detail from a device must not be able to forge log lines
        self._reject_log.warning(dead.reason.value, "rejected %s from %r: %r", dead.reasons_text,
                                 dead.topic[:128], dead.detail)

    def dead_letter(self, rejection: Rejection, received_ms: int) -> bytes:
        """The ``ct_rejects`` line of a refusal that is not a device's (``write_rejected``), counted; no budget."""
        dead = summarize([rejection])
        self.count_refusals(dead)
        return self._outlet.formatter.line(dead, received_ms)

    def use_catalog(self, catalog: Catalog, validator: Validator, dead: DeadLetterFormatter) -> None:
        """Reload (run/reload.py): the next message meets the new catalog; called between two messages."""
        self.validator = validator
        self._outlet.use_formatter(dead)
        self._system_of = {device.id: device.system.value for device in catalog.devices.values()}


def _refuse_unwritable(outcome: Outcome, reading: Reading, exc: LineRangeError, message: InboundMessage) -> None:
    """Take ``reading`` out of ``outcome`` and refuse it as a processing error (a validator gap, logged)."""
    log.error("a reading of %s has no line-protocol form (%s): refused", reading.device_id, exc)
    outcome.readings = [r for r in outcome.readings if r is not reading]
    outcome.rejections.append(Rejection(
        reason=Reason.PROCESSING_ERROR, detail=f"unwritable reading: {exc}"[:512], topic=message.topic,
        excerpt=excerpt(message.payload), device_id=reading.device_id, seq=reading.seq if reading.seq >= 0 else None))
