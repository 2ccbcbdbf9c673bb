"""Stage contracts: each stage of the pipeline is one of these small protocols.

    MessageSource -> Validator -> Sink      (alerts and dead letters hang off the same records)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from citytelemetry.records import Outcome, Reading


class Delivery(Protocol):
    """The broker-side handle of one message: settle it once its fate is durable downstream."""

    def settle(self) -> None: ...


@dataclass(slots=True)  # not frozen: one per message on the hot path (see records.Reading)
class InboundMessage:
    """A message as received from the broker, before any interpretation."""

    topic: str
    payload: bytes
    received_ms: int
    delivery: Delivery


class MessageSource(Protocol):
    """Yields inbound messages; each is acknowledged to the broker only after ``delivery.settle()``."""

    def messages(self) -> AsyncIterator[InboundMessage]: ...


class Validator(Protocol):
    """Turns one inbound message into readings and reason-coded rejections; never raises."""

    def __call__(self, message: InboundMessage) -> Outcome: ...


class LineWriter(Protocol):
    """Writes one batch of line-protocol lines; raises ``citytelemetry.sink.errors.WriteError``."""

    async def write(self, lines: Sequence[bytes]) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True, frozen=True)
class AlertCounters:
    """What the alert rules have done so far, for /metrics (read at scrape time)."""

    readings: int  # readings the rules have seen
    rule_errors: int  # rule failures (counted, logged; ingestion goes on)
    transitions: int  # firings and resolutions
    firing: int  # alerts firing now
    delivered: int  # alert events and re-sends accepted by Alertmanager
    delivery_failures: int  # failed delivery attempts (each retried)
    dropped: int  # events lost to a full delivery queue (logged)
    queued: int  # events waiting for Alertmanager


class AlertEvaluator(Protocol):
    """In-stream alert rules: sees every accepted reading as it is validated, keeps time-based rules
    (staleness, re-sends) and delivery running in ``run``, and persists its state in ``aclose``."""

    def observe(self, readings: Sequence[Reading]) -> None:
        """Accepted readings of one message, including ``ct_device_status`` records (birth / last will)."""

    async def run(self) -> None:
        """Background work until cancelled."""

    async def aclose(self) -> None: ...

    def counters(self) -> AlertCounters: ...


EmitLines = Callable[[Sequence[bytes]], None]  # how an evaluator writes its own points (alert history)
