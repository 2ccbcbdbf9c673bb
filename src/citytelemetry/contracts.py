"""Stage contracts: each stage of the pipeline is one of these small protocols.

    MessageSource -> Validator -> Sink      (alerts and dead letters hang off the same records)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from citytelemetry.records import Outcome


@dataclass(slots=True, frozen=True)
class InboundMessage:
    """A message as received from the broker, before any interpretation."""

    topic: str
    payload: bytes
    received_ms: int
    token: int  # delivery token: hand back to ``MessageSource.settle`` once the message's fate is durable


class MessageSource(Protocol):
    """Yields inbound messages and learns when each one is settled (written or dead-lettered)."""

    def messages(self) -> AsyncIterator[InboundMessage]: ...

    def settle(self, token: int) -> None:
        """The message is durable downstream; the source may acknowledge it to the broker."""


class Validator(Protocol):
    """Turns one inbound message into readings and reason-coded rejections; never raises."""

    def __call__(self, message: InboundMessage) -> Outcome: ...


class LineWriter(Protocol):
    """Writes one batch of line-protocol lines; raises ``citytelemetry.sink.errors.WriteError``."""

    async def write(self, lines: Sequence[bytes]) -> None: ...

    async def aclose(self) -> None: ...
