"""Deliveries and line writers that stand in for the broker and InfluxDB."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from citytelemetry.sink.errors import BatchTooLargeError, RejectedLinesError, RetryableWriteError

if TYPE_CHECKING:
    from citytelemetry.contracts import Delivery, LineWriter


class NeverSettled:
    """A ``Delivery`` whose message must not be settled by the code under test."""

    __slots__ = ()

    def settle(self) -> None:
        raise AssertionError("this message must not be settled here")


class CountingDelivery:
    __slots__ = ("settled",)

    def __init__(self) -> None:
        self.settled = 0

    def settle(self) -> None:
        self.settled += 1


class CapturingWriter:
    """A fake InfluxDB: keeps every batch it accepted, in order.

    ``down`` (or the first ``fail_first`` attempts) -> HTTP 503, retryable; a batch over ``max_lines`` ->
    413; a batch holding one of ``bad`` -> a partial write refusing lines.
    """

    def __init__(self, *, fail_first: int = 0, bad: frozenset[bytes] = frozenset(), max_lines: int = 10_000,
                 retry_after: float | None = None) -> None:
        self.batches: list[list[bytes]] = []
        self.attempts = 0
        self.down = False
        self.closed = False
        self._fail_first, self._bad, self._max, self._retry_after = fail_first, bad, max_lines, retry_after

    @property
    def lines(self) -> list[bytes]:
        return [line for batch in self.batches for line in batch]

    async def prepare(self) -> None:
        return None

    async def write(self, lines: Sequence[bytes]) -> None:
        self.attempts += 1
        if self.down or self.attempts <= self._fail_first:
            raise RetryableWriteError("HTTP 503: busy", retry_after_s=self._retry_after)
        if len(lines) > self._max:
            raise BatchTooLargeError("HTTP 413")
        if self._bad & set(lines):
            raise RejectedLinesError('partial write: unable to parse "bad"')
        self.batches.append(list(lines))

    async def aclose(self) -> None:
        self.closed = True


class DroppingWriter:
    """Accepts and forgets; counts lines (benchmarks that must not hold what they write)."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines = 0

    async def prepare(self) -> None:
        return None

    async def write(self, lines: Sequence[bytes]) -> None:
        self.lines += len(lines)

    async def aclose(self) -> None:
        return None


if TYPE_CHECKING:  # mypy checks each fake against the protocol it stands in for
    _deliveries: tuple[Delivery, ...] = (NeverSettled(), CountingDelivery())
    _writers: tuple[LineWriter, ...] = (CapturingWriter(), DroppingWriter())
