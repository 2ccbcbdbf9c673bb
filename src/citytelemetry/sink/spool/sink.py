"""``SpooledSink``: the pipeline's sink when a spool directory is configured.

Lines are acknowledged once fsync'd in the spool; a feeder then moves committed records, in order,
into the ``BufferedSink`` that writes InfluxDB. Fresh records travel in memory (bounded); when
InfluxDB falls behind, the feeder reads the backlog back from disk, so an outage costs disk, not RAM.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence

from citytelemetry.contracts import OnDurable
from citytelemetry.sink.buffer import BufferedSink
from citytelemetry.sink.spool.reader import SegmentReader
from citytelemetry.sink.spool.recent import RecentRecords, joined_lines
from citytelemetry.sink.spool.wal import Spool

log = logging.getLogger(__name__)
CHECKPOINT_EVERY_S = 1.0


class SpooledSink:
    def __init__(self, spool: Spool, buffer: BufferedSink, *, memory_lines: int = 100_000,
                 read_lines: int = 20_000, checkpoint_every_s: float = CHECKPOINT_EVERY_S) -> None:
        self.spool = spool
        self.buffer = buffer
        self.stats = buffer.stats
        self._read_lines = read_lines
        self._checkpoint_every_s = checkpoint_every_s
        self._recent = RecentRecords(memory_lines)
        self._final = False  # set once the spool is closed: feed what is committed, then stop
        spool.on_commit = self._recent.keep

    # -- producer side (same shape as BufferedSink) ----------------------------------------------
    async def put(self, lines: Sequence[bytes], on_durable: OnDurable | None = None) -> None:
        await self.spool.wait_room()
        self.spool.submit(lines, on_durable)

    def put_nowait(self, lines: Sequence[bytes], on_durable: OnDurable | None = None) -> None:
        self.spool.submit(lines, on_durable)

    def put_many_nowait(self, messages: Sequence[tuple[Sequence[bytes], OnDurable]]) -> None:
        self.spool.submit_many(messages)

    def full(self) -> bool:
        return self.spool.full()

    async def wait_settled(self) -> None:
        """Everything put so far is durable in the spool (so its messages are acknowledged)."""
        await self.spool.wait_idle()

    @property
    def pending(self) -> int:
        return self.spool.stats.depth_records

    # -- running ---------------------------------------------------------------------------------
    async def run(self) -> None:
        committer = asyncio.create_task(self.spool.run(), name="spool-commit")
        feeder = asyncio.create_task(self._feed(), name="spool-feeder")
        writer = asyncio.create_task(self.buffer.run(), name="influx-writer")
        checkpoints = asyncio.create_task(self._checkpoints(), name="spool-checkpoint")
        tasks = (committer, feeder, writer, checkpoints)
        try:
            await committer  # returns after close(), once everything submitted is durable
            self._final = True
            self.spool.notify_committed()
            await feeder
            await self.buffer.close()
            await writer
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.spool.checkpoint()
            self.spool.release()

    async def close(self) -> None:
        await self.spool.close()

    async def _feed(self) -> None:
        """Move committed records, in id order, into the InfluxDB buffer."""
        reader = self.spool.reader()
        next_id = self.spool.drained_id + 1
        try:
            while True:
                next_id = self.spool.skip_lost(next_id)
                if next_id >= self.spool.next_id:
                    if self._final:
                        return
                    await self.spool.wait_committed()
                    continue
                records = await self._next_records(reader, next_id)
                if not records:
                    continue
                # One hand-over per group, not per record: the buffer settles in order, so the group is
                # drained once its last line is written (a call, a partial and a mark per record cost
                # ~1.5 us a W1 message).
                last_id = records[-1][0]
                lines = joined_lines(records)
                drained = functools.partial(self.spool.mark_drained, last_id, len(records))
                if self.buffer.full():
                    await self.buffer.put(lines, drained)
                else:  # the common case without a coroutine
                    self.buffer.put_nowait(lines, drained)
                next_id = last_id + 1
        finally:
            reader.close()

    async def _next_records(self, reader: SegmentReader, next_id: int) -> list[tuple[int, Sequence[bytes]]]:
        batch = self._recent.take(next_id)  # every consecutive record in memory: one await per group commit
        if batch:
            return batch
        found = await asyncio.to_thread(self.spool.read_range, reader, next_id, self._read_lines)
        return [(r.id, r.lines) for r in found]

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self._checkpoint_every_s)
            with contextlib.suppress(OSError):  # retried next second; the data itself is safe
                self.spool.checkpoint()
