"""Stage contracts: each stage of the pipeline is one of these small protocols.

    MessageSource -> Validator -> Sink -> LineWriter      (alerts and dead letters hang off the same records)

A message's lines go into the ``Sink`` with an ``OnDurable`` callback; the sink calls it once those
lines are durable (fsync'd in the spool, or written to InfluxDB), and only then is the message settled
(PUBACKed) at the broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from citytelemetry.records import Delivery, InboundMessage, Outcome, Reading

if TYPE_CHECKING:
    from aiohttp import web

OnDurable = Callable[[], None]  # called once, when every line handed over with it is durable


__all__ = ["AlertCounters", "AlertEvaluator", "Delivery", "InboundMessage", "LineWriter", "MessageSource",
           "OnDurable", "Sink", "Validator"]


class MessageSource(Protocol):
    """Yields inbound messages; each is acknowledged to the broker only after ``delivery.settle()``."""

    def messages(self) -> AsyncIterator[InboundMessage]: ...


class Validator(Protocol):
    """Turns one inbound message into readings and reason-coded rejections; never raises."""

    def __call__(self, message: InboundMessage) -> Outcome: ...


class Sink(Protocol):
    """Takes lines with a durability callback; batches, retries and settles them in order.

    ``put`` waits when the sink is full (back-pressure reaches the broker); ``put_nowait`` is for the
    pipeline's own small records (self-metrics, alert history), which must never wait on devices, and
    for device lines while ``full()`` is false (no coroutine per message on the hot path).
    """

    def full(self) -> bool:
        """``put`` would wait now."""

    @property
    def pending(self) -> int:
        """Lines handed over and not yet durable in InfluxDB."""

    async def put(self, lines: Sequence[bytes], on_durable: OnDurable | None = None) -> None: ...

    def put_nowait(self, lines: Sequence[bytes], on_durable: OnDurable | None = None) -> None: ...

    def put_many_nowait(self, messages: Sequence[tuple[Sequence[bytes], OnDurable]]) -> None:
        """``put_nowait`` of each (lines, on_durable), in order: one call for the pump's batch of messages."""

    async def run(self) -> None:
        """Flush on size or interval until ``close``; then flush once more and return."""

    async def wait_settled(self) -> None:
        """Until every line handed over so far is durable and its callback has run."""

    async def close(self) -> None: ...


class LineWriter(Protocol):
    """Writes one batch of line-protocol lines; raises ``citytelemetry.sink.errors.WriteError``."""

    async def prepare(self) -> None:
        """Ready the store before the first write (1.x: ``CREATE DATABASE`` when configured); may raise."""

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

    def follow(self, behind: Callable[[], bool]) -> None:
        """Time-based rules (staleness) hold while ``behind()``: the consumer's lag is not device silence."""

    def add_routes(self, app: web.Application) -> None:
        """Its pages (where alerts' generatorURL points) on the pipeline's HTTP server."""


EmitLines = Callable[[Sequence[bytes]], None]  # how an evaluator writes its own points (alert history)
