"""Stage contracts: each stage of the pipeline is one of these small protocols.

    MessageSource -> Validator -> Sink      (alerts and dead letters hang off the same records)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from citytelemetry.records import Outcome


class Delivery(Protocol):
    """The broker-side handle of one message: settle it once its fate is durable downstream."""

    def settle(self) -> None: ...


@dataclass(slots=True, frozen=True)
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
