"""Event time: the clock that staleness, coverage and completeness are measured on.

Rules on readings use the readings' own timestamps (device time). Rules on *silence* need a "now":
that is the newest device timestamp seen (never ahead of the wall clock, so one device with a fast
clock cannot make every other device look silent), carried forward at wall-clock speed while no
reading arrives. An accelerated simulation therefore behaves like real time, and a stream that stops
altogether still ages. The wall clock is injected (``clock``, seconds like ``time.time``).

Carrying forward is only right while the consumer is caught up. While it is behind (a backlog drain,
catch-up after an outage, a stalled batch) the broker holds readings newer than the mark, so the
wall time that passes is not the devices' silence: ``hold()`` restarts the carry-forward from the mark.
"""

from __future__ import annotations

from collections.abc import Callable

WallClock = Callable[[], float]


class EventClock:
    __slots__ = ("_clock", "_last_ms", "_mark_ms", "_mark_wall_ms", "start_ms")

    def __init__(self, clock: WallClock, start_ms: int | None = None, mark_ms: int | None = None) -> None:
        self._clock = clock
        self.start_ms = start_ms  # event time of the first reading ever seen (kept across restarts)
        self._mark_ms = mark_ms
        self._mark_wall_ms = self.wall_ms()
        self._last_ms = mark_ms or 0

    def wall_ms(self) -> int:
        return int(self._clock() * 1000)

    @property
    def mark_ms(self) -> int | None:
        """The newest device time consumed (capped at the wall clock); None before the first reading."""
        return self._mark_ms

    @property
    def started(self) -> bool:
        return self._mark_ms is not None

    def advance(self, ts_ms: int) -> None:
        """A telemetry reading taken at ``ts_ms`` (device time) was accepted."""
        wall = self.wall_ms()
        candidate = min(ts_ms, wall)
        if self._mark_ms is None or candidate > self._mark_ms:
            self._mark_ms, self._mark_wall_ms = candidate, wall
            if self.start_ms is None:
                self.start_ms = candidate

    def hold(self) -> None:
        """The consumer is behind: event time stays at what was consumed instead of ageing with the wall."""
        if self._mark_ms is not None:
            self._mark_ms = max(self._mark_ms, self._last_ms)
            self._mark_wall_ms = self.wall_ms()

    def now_ms(self) -> int:
        """Event time now; never goes back. Before the first reading: the wall clock (not remembered:
        an accelerated simulation's first readings lie in the past)."""
        wall = self.wall_ms()
        if self._mark_ms is None:
            return wall
        self._last_ms = max(self._last_ms, self._mark_ms + max(0, wall - self._mark_wall_ms))
        return self._last_ms
