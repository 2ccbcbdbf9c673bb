"""The spool's write-ahead log: group-committed, fsync'd, bounded, recovered at start.

``submit`` queues lines with a callback; the committer task writes every queued record in one
``write`` + ``fsync`` (group commit) in a worker thread, then fires the callbacks: that is when the
MQTT message may be acknowledged. A write error (disk full, directory gone) acknowledges nothing: the
batch is retried after a backoff, and meanwhile the bound on pending records stops the consumer, so
the broker keeps the backlog. Drained records are checkpointed and their segments deleted.

This module is the composition and the committer loop; the parts each have a module: ``writer`` (append
and fsync), ``reader`` (read-back), ``ledger`` (drained and committed ids), ``recovery`` (the scan at
start and what it finds lost), ``drain`` (undrained bytes and age), ``fileops`` (the I/O seam),
``records`` (the on-disk format).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from citytelemetry.contracts import OnDurable
from citytelemetry.sink.backoff import Backoff
from citytelemetry.sink.spool import recent, records
from citytelemetry.sink.spool.drain import DrainBook
from citytelemetry.sink.spool.errors import SpoolError
from citytelemetry.sink.spool.fileops import FileOps, Lock, OsFileOps
from citytelemetry.sink.spool.ledger import IdRange, Ledger, Marks
from citytelemetry.sink.spool.reader import SegmentReader
from citytelemetry.sink.spool.records import Record
from citytelemetry.sink.spool.recovery import SpoolLoss, recover
from citytelemetry.sink.spool.writer import SegmentWriter

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

GROUP_TARGET = 256  # records: commit at once when this many wait
GROUP_WINDOW_S = 0.005  # else wait this long for more to join the group
MAX_PENDING_RECORDS = 50_000  # submitted, not yet fsync'd: beyond this ``wait_room`` blocks

__all__ = ["Spool", "SpoolError", "SpoolLoss", "SpoolStats"]


@dataclass(slots=True)
class SpoolStats:
    records_appended: int = 0
    records_drained: int = 0
    records_lost: int = 0  # acknowledged records recovery found missing (spool.loss says which)
    depth_records: int = 0
    bytes_on_disk: int = 0
    oldest_age_s: float = 0.0
    fsyncs: int = 0
    write_failures: int = 0
    last_error: str = ""  # in words: "spool disk full: ...", "" while writes succeed


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int = 8 * 1024 * 1024,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 ops: FileOps | None = None, backoff: Backoff | None = None) -> None:
        self.directory = directory
        self.ops: FileOps = ops or OsFileOps()
        self._max_bytes = max_bytes
        self._clock_ms = clock_ms
        self._backoff = backoff or Backoff(base_s=0.1, cap_s=5.0)
        self.stats = SpoolStats()
        self.next_id = 1  # ids below are durable
        self.loss: SpoolLoss | None = None  # what recovery found lost at ``open``
        self._gaps: tuple[IdRange, ...] = ()  # lost id ranges below next_id: skipped by the feeder
        self._book = DrainBook(0)
        self._ledger = Ledger(directory, self.ops)
        self._writer = SegmentWriter(directory, self.ops, segment_bytes)
        self._writing = False  # a group is being appended in the worker thread
        self._lock: Lock | None = None
        self._pending: list[tuple[Sequence[bytes], OnDurable | None]] = []
        self._wakeup = asyncio.Event()
        self._committed = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.on_commit: Callable[[int, recent.Group], None] | None = None  # (first id, group) once durable

    @property
    def drained_id(self) -> int:
        """Ids up to this one are in InfluxDB."""
        return self._book.drained_id

    @property
    def undrained_bytes(self) -> int:
        """What the bound applies to: drained data may still sit in a segment."""
        return self._book.undrained_bytes

    # -- start: recovery (sync I/O, before the loop runs anything else) ------------------------------
    def open(self) -> None:
        self._lock_directory()
        marks = self._ledger.load()
        found = recover(self.directory, self.ops, marks)
        self._book = DrainBook(marks.drained)
        self.next_id = found.next_id
        self._gaps = found.gaps
        self.stats.bytes_on_disk = found.bytes_on_disk
        if found.loss is not None:
            self.loss = found.loss
            self.stats.records_lost += found.loss.records
            log.error("spool: %s", found.loss.describe())
        # Record the truth as recovered, so that a second start does not report the same loss again.
        self._ledger.save(Marks(marks.drained, self.next_id - 1, found.gaps))
        self._update_depth()
        if self.stats.depth_records:  # bytes: an upper bound (drained records are not told apart)
            self._book.committed(found.last_on_disk, self._clock_ms(), self.stats.bytes_on_disk)
            log.info("spool: %d records from a previous run will be written first", self.stats.depth_records)
        self._delete_drained_segments()

    def _lock_directory(self) -> None:
        ops = self.ops
        try:
            ops.make_dir(self.directory)
            probe = self.directory / ".probe"
            ops.replace(probe, b"ok")
            ops.remove(probe)
            self._lock = ops.lock(self.directory / ".lock")
        except BlockingIOError:
            raise SpoolError(f"spool directory {self.directory} is in use by another process; "
                             "give each instance its own pipeline.spool_dir") from None
        except OSError as exc:
            raise SpoolError(f"spool directory {self.directory} is not writable: {exc.strerror or exc}") from exc

    # -- producers -------------------------------------------------------------------------------
    def submit(self, lines: Sequence[bytes], on_durable: OnDurable | None = None) -> None:
        self.submit_many(((lines, on_durable),))

    def submit_many(self, messages: Sequence[tuple[Sequence[bytes], OnDurable | None]]) -> None:
        """Queue records in order (the pump's batch: one call, not one per message)."""
        if not messages:
            return
        pending = self._pending
        first = not pending  # the first since the committer took a group: later ones find both done
        pending.extend(messages)
        if first:
            self._idle.clear()
            self._wakeup.set()

    def full(self) -> bool:
        return self._book.undrained_bytes >= self._max_bytes or len(self._pending) >= MAX_PENDING_RECORDS

    async def wait_room(self) -> None:
        while self.full():
            self._room.clear()
            await self._room.wait()

    async def wait_idle(self) -> None:
        """Return once everything submitted so far is durable (and its callbacks have fired)."""
        await self._idle.wait()

    async def wait_committed(self) -> None:
        self._committed.clear()
        await self._committed.wait()

    def notify_committed(self) -> None:
        self._committed.set()

    # -- the committer ---------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(self._pending) < GROUP_TARGET and not self._closing:
                # Measured: committing every message alone cost ~16 % of the CPU (one write, fsync and
                # thread hand-off each). A short window lets a group form; it bounds ack latency.
                await asyncio.sleep(GROUP_WINDOW_S)
            group, self._pending = self._pending, []
            now_ms = self._clock_ms()
            first = self.next_id
            data = records.encode_group(first, group, now_ms)
            await self._append(first, data, len(group))
            self._committed_group(first, group, now_ms, len(data))

    async def _append(self, first: int, data: bytes, count: int) -> None:
        """Until the group is durable: retried after a backoff, nothing of it acknowledged meanwhile."""
        attempt = 0
        while True:
            self._writing = True
            try:
                await asyncio.to_thread(self._writer.append, first, data)
            except OSError as exc:  # writer.append raises SpoolWriteError, an OSError saying why in words
                failure: OSError | None = exc
            else:
                failure = None
            finally:
                self._writing = False
            if failure is None:
                self.stats.bytes_on_disk += len(data)
                self.stats.fsyncs = self._writer.fsyncs
                return
            self.stats.write_failures += 1
            self.stats.last_error = str(failure)
            delay = self._backoff.delay(attempt)
            attempt += 1
            log.error("spool: %s; %d records wait, none of them acknowledged; retrying in %.1f s",
                      failure, count, delay)
            await asyncio.sleep(delay)  # meanwhile a checkpoint may free drained space (_retire_if_drained)

    def _committed_group(self, first: int, group: list[tuple[Sequence[bytes], OnDurable | None]],
                         now_ms: int, size: int) -> None:
        self.next_id = first + len(group)
        self.stats.records_appended += len(group)
        self._update_depth()
        self.stats.last_error = ""
        self._book.committed(self.next_id - 1, now_ms, size)
        if self.on_commit is not None:
            self.on_commit(first, group)
        recent.settle(group)
        if not self.full():
            self._room.set()
        self._committed.set()

    # -- draining --------------------------------------------------------------------------------
    def mark_drained(self, record_id: int, records: int = 1) -> None:
        """Called in id order once the lines of ``records`` records up to ``record_id`` are in InfluxDB."""
        self._book.drained(record_id)
        self.stats.records_drained += records
        if self._gaps:
            self._update_depth()
        else:  # per record: the common case inline
            self.stats.depth_records = self.next_id - 1 - record_id
        if not self.full():
            self._room.set()

    def _update_depth(self) -> None:
        depth = self.next_id - 1 - self._book.drained_id
        if self._gaps:  # lost ids are not owed to InfluxDB
            drained = self._book.drained_id
            depth -= sum(b - max(a, drained + 1) + 1 for a, b in self._gaps if b > drained)
        self.stats.depth_records = depth

    def oldest_age_s(self) -> float:
        return self._book.oldest_age_s(self._clock_ms(), self.next_id - 1)

    def checkpoint(self) -> None:
        """Persist the ledger and delete segments wholly drained (sync I/O: small, once a second)."""
        self.stats.oldest_age_s = self.oldest_age_s()
        drained = self._book.drained_id
        moved = drained != self._ledger.saved.drained
        self._ledger.save(Marks(drained, self.next_id - 1, self._gaps))
        if self._gaps:
            self._gaps = tuple(g for g in self._gaps if g[1] > drained)
        if self._retire_if_drained() or moved:
            self._delete_drained_segments()
            if not self.full():
                self._room.set()

    def _retire_if_drained(self) -> bool:
        """While writes fail and everything is drained, free the active segment: on a disk smaller than
        one segment, the drained data in it is what fills the disk (the next append starts a new one)."""
        if not self.stats.last_error or self._writing or self._book.drained_id < self.next_id - 1:
            return False
        size = self._writer.active_size
        path = self._writer.retire()
        if path is None:
            return False
        self.ops.remove(path)
        self.stats.bytes_on_disk -= size
        log.warning("spool: freed the drained active segment %s (%d bytes) to make room", path.name, size)
        return True

    def _delete_drained_segments(self) -> None:
        paths = records.segments(self.ops, self.directory)
        for path, following in itertools.pairwise(paths):
            last_id_in_path = records.first_id_of(following) - 1
            if last_id_in_path <= self._book.drained_id and records.first_id_of(path) != self._writer.active_first:
                self.stats.bytes_on_disk -= self.ops.size(path)
                self.ops.remove(path)

    async def close(self) -> None:
        """Let the committer write what is pending and stop; the file is closed by ``release``."""
        self._closing = True
        self._wakeup.set()

    def release(self) -> None:
        self._writer.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- reading back ----------------------------------------------------------------------------
    def reader(self) -> SegmentReader:
        return SegmentReader(self.directory, self.ops)

    def skip_lost(self, record_id: int) -> int:
        """The first id from ``record_id`` on that is not lost (recovery reported the lost ones)."""
        for first, last in self._gaps:  # sorted, disjoint
            if first <= record_id <= last:
                record_id = last + 1
        return record_id

    def read_range(self, reader: SegmentReader, first_id: int, max_lines: int) -> list[Record]:
        """Worker thread: committed records from ``first_id`` on, up to about ``max_lines`` lines."""
        found: list[Record] = []
        lines = 0
        record_id = first_id
        while lines < max_lines:
            if self._gaps:
                record_id = self.skip_lost(record_id)
            if record_id >= self.next_id:
                break
            record = reader.read(record_id)
            found.append(record)
            lines += len(record.lines)
            record_id += 1
        return found
