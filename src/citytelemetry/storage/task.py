"""The rollup task: every ``interval_s``, compute the due dirty windows, once their raw data is written.

A window is computed only after everything the sink had taken when its marks were taken is in InfluxDB
(``WrittenBarrier``): otherwise a reading still in the buffer or the spool would be missing from its
rollup. A failed cycle gives its marks back; the marks are checkpointed after every cycle and at close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from citytelemetry.contracts import Sink
from citytelemetry.sink.buffer import BufferedSink
from citytelemetry.sink.errors import WriteError
from citytelemetry.sink.spool import SpooledSink
from citytelemetry.storage.query import QueryError
from citytelemetry.storage.rollup import Rollups
from citytelemetry.storage.windows import DirtyWindows

log = logging.getLogger(__name__)
DRAIN_POLL_S = 0.05


class WrittenBarrier(Protocol):
    async def __call__(self) -> None:
        """Return once every line the sink took before the call is written to InfluxDB."""


def written_barrier(sink: Sink) -> WrittenBarrier:
    if isinstance(sink, SpooledSink):
        return _SpoolDrained(sink)
    if isinstance(sink, BufferedSink):
        return _BufferWritten(sink)
    raise TypeError(f"no written-barrier for {type(sink).__name__}: rollups need to know when lines are written")


class _BufferWritten:
    __slots__ = ("_sink",)

    def __init__(self, sink: BufferedSink) -> None:
        self._sink = sink

    async def __call__(self) -> None:
        # No lines, only a mark: it fires once every line put before it is written (batches settle in order).
        written = asyncio.Event()
        self._sink.put_nowait([], written.set)
        await written.wait()


class _SpoolDrained:
    __slots__ = ("_sink",)

    def __init__(self, sink: SpooledSink) -> None:
        self._sink = sink

    async def __call__(self) -> None:
        spool = self._sink.spool
        await spool.wait_idle()  # every record submitted so far has its id
        target = spool.next_id - 1
        # The feeder moves records to InfluxDB in id order; the spool has no event per drained record,
        # and this runs once per rollup cycle, so a short poll costs nothing.
        while spool.drained_id < target:  # noqa: ASYNC110
            await asyncio.sleep(DRAIN_POLL_S)


class RollupTask:
    def __init__(self, rollups: Rollups, windows: DirtyWindows, barrier: Callable[[], Awaitable[None]], *,
                 interval_s: float, grace_s: float, checkpoint: Path,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.rollups = rollups
        self.windows = windows
        self._barrier = barrier
        self._interval_s = interval_s
        self._grace_ms = int(grace_s * 1000)
        self._checkpoint = checkpoint
        self.clock_ms = clock_ms  # decides which windows are due (a test moves it on)
        self.failures = 0
        self.cycles = 0  # completed
        self.ready = False  # the tiers exist in the store (checked each cycle until they do)
        self._told: str | None = None  # the last not-ready reason logged (logged once per reason)

    def open(self, recompute_windows: int) -> int:
        """Restore the last run's marks and mark the last windows of every series; returns marks restored."""
        try:
            restored = self.windows.load(self._checkpoint)
        except (OSError, ValueError) as exc:  # ingestion must not wait for a rollup file: recompute instead
            log.warning("rollups: %s; starting without the last run's marks (`storage backfill` recomputes "
                        "a range)", exc)
            restored = 0
        self.windows.mark_recent(self.clock_ms(), recompute_windows)
        return restored

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.cycle()
            except Exception:  # a bug of ours must not stop the rollups silently: say it, try again
                log.exception("rollups: cycle failed")

    async def _check_ready(self) -> bool:
        """The tiers' retention policies exist; until they do, marks are dropped (``storage backfill`` later)."""
        try:
            missing = await self.rollups.missing_tiers()
        except QueryError as exc:
            reason = f"cannot read the retention policies ({exc})"
        else:
            if not missing:
                self.ready = True
                log.info("rollups: tiers %s present; computing windows every %.0f s",
                         ", ".join(t.name for t in self.rollups.tiers), self._interval_s)
                return True
            reason = f"retention policies {', '.join(missing)} missing: run `citytelemetry storage apply`"
        dropped = self.windows.clear()
        if reason != self._told:
            log.warning("rollups off for now: %s; %d window marks dropped (`citytelemetry storage backfill` "
                        "computes them later)", reason, dropped)
            self._told = reason
        return False

    async def cycle(self) -> int:
        """Compute what is due now; returns the points written (0 if nothing was due or it failed)."""
        if not self.ready and not await self._check_ready():
            return 0
        due = self.windows.take_due(self.clock_ms(), self._grace_ms)
        written = 0
        if due:
            try:
                await self._barrier()
                written = await self.rollups.compute(due)
            except (QueryError, WriteError) as exc:
                self.windows.restore(due)
                self.failures += 1
                log.warning("rollups: %d windows not computed (%s); next try in %.0f s", len(due), exc,
                            self._interval_s)
            except BaseException:
                self.windows.restore(due)
                raise
        self._save()
        self.cycles += 1
        return written

    def _save(self) -> None:
        if self.windows.changed:
            try:
                self.windows.save(self._checkpoint)
            except OSError as exc:
                log.warning("rollups: cannot write %s (%s); tried again next cycle", self._checkpoint, exc)

    async def aclose(self) -> None:
        """Keep every mark for the next start (nothing is computed at stop: the raw data may still be coming)."""
        if self.ready:  # not ready: the marks would be dropped anyway (and no stray file is written)
            with contextlib.suppress(OSError):
                self.windows.save(self._checkpoint)
        await self.rollups.aclose()
