"""The spool's write-ahead log: group-committed, fsync'd, bounded, recovered at start.

``submit`` queues lines with a callback; the committer task writes every queued record in one
``write`` + ``fsync`` (group commit) in a worker thread, then fires the callbacks: that is when the
MQTT message may be acknowledged. A write error (disk full, directory gone) acknowledges nothing: the
batch is retried after a backoff, and meanwhile the bound on pending records stops the consumer, so
the broker keeps the backlog. Drained records are checkpointed and their segments deleted.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from citytelemetry.contracts import OnDurable
from citytelemetry.sink.backoff import Backoff
from citytelemetry.sink.spool import records
from citytelemetry.sink.spool.records import Record

log = logging.getLogger(__name__)

CHECKPOINT = "drained"
GROUP_TARGET = 256  # records: commit at once when this many wait
GROUP_WINDOW_S = 0.005  # else wait this long for more to join the group
MAX_PENDING_RECORDS = 50_000  # submitted, not yet fsync'd: beyond this ``wait_room`` blocks


class SpoolError(Exception):
    """The spool directory cannot be used; the message says which and why."""


@dataclass(slots=True)
class SpoolStats:
    records_appended: int = 0
    records_drained: int = 0
    depth_records: int = 0
    bytes_on_disk: int = 0
    oldest_age_s: float = 0.0
    fsyncs: int = 0
    write_failures: int = 0
    last_error: str = ""


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int = 8 * 1024 * 1024,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._clock_ms = clock_ms
        self.stats = SpoolStats()
        self.next_id = 1  # ids below are durable
        self.drained_id = 0  # ids up to this one are in InfluxDB
        self._checkpointed = 0
        self._pending: list[tuple[Sequence[bytes], OnDurable | None]] = []
        self._groups: deque[tuple[int, int, int]] = deque()  # commit groups: (last id, appended ms, bytes)
        self.undrained_bytes = 0  # what the bound applies to: drained data may still sit in a segment
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._active_first = 0
        self._active_size = 0
        self._wakeup = asyncio.Event()
        self._committed = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.on_commit: Callable[[list[tuple[int, Sequence[bytes]]]], None] | None = None

    # -- start: recovery (sync I/O, before the loop runs anything else) ------------------------------
    def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / ".probe"
            probe.write_bytes(b"ok")
            probe.unlink()
            self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(f"spool directory {self.directory} is not writable: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise SpoolError(f"spool directory {self.directory} is in use by another process; "
                             "give each instance its own pipeline.spool_dir") from None
        checkpoint = self.directory / CHECKPOINT
        if checkpoint.exists():
            self.drained_id = self._checkpointed = int(checkpoint.read_text().strip() or 0)
        last_id = self.drained_id
        for path in records.segments(self.directory):
            data = path.read_bytes()
            good_end = 0
            for end, record in records.scan(data):
                good_end, last_id = end, record.id
            if good_end < len(data):
                log.warning("spool: cutting a torn tail of %d bytes off %s", len(data) - good_end, path.name)
                with path.open("r+b") as handle:
                    handle.truncate(good_end)
                    os.fsync(handle.fileno())
            self.stats.bytes_on_disk += good_end
        self.next_id = max(last_id, self.drained_id) + 1
        self.stats.depth_records = self.next_id - 1 - self.drained_id
        if self.stats.depth_records:
            self.undrained_bytes = self.stats.bytes_on_disk  # an upper bound: drained records not told apart
            self._groups.append((self.next_id - 1, self._clock_ms(), self.undrained_bytes))
            log.info("spool: %d records from a previous run will be written first", self.stats.depth_records)
        self._delete_drained_segments()

    # -- producers -------------------------------------------------------------------------------
    def submit(self, lines: Sequence[bytes], on_durable: OnDurable | None = None) -> None:
        self._pending.append((lines, on_durable))
        self._idle.clear()
        self._wakeup.set()

    def full(self) -> bool:
        return self.undrained_bytes >= self._max_bytes or len(self._pending) >= MAX_PENDING_RECORDS

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
        backoff = Backoff(base_s=0.1, cap_s=5.0)
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
            data = b"".join(records.encode(first + i, lines, now_ms) for i, (lines, _) in enumerate(group))
            attempt = 0
            while True:
                try:
                    await asyncio.to_thread(self._write, first, data)
                    self.stats.bytes_on_disk += len(data)
                    break
                except OSError as exc:
                    self.stats.write_failures += 1
                    self.stats.last_error = f"spool write failed: {exc}"
                    delay = backoff.delay(attempt)
                    attempt += 1
                    log.error(  # noqa: TRY400 - the OSError text says it all
                        "spool: cannot write %d records to %s (%s); nothing of them is acknowledged; "
                              "retrying in %.1f s", len(group), self.directory, exc, delay)
                    await asyncio.sleep(delay)
            self._committed_group(first, group, now_ms, len(data))

    def _committed_group(self, first: int, group: list[tuple[Sequence[bytes], OnDurable | None]],
                         now_ms: int, size: int) -> None:
        self.next_id = first + len(group)
        self.stats.records_appended += len(group)
        self.stats.depth_records = self.next_id - 1 - self.drained_id
        self.stats.last_error = ""
        self._groups.append((self.next_id - 1, now_ms, size))
        self.undrained_bytes += size
        if self.on_commit is not None:
            self.on_commit([(first + i, lines) for i, (lines, _) in enumerate(group)])
        for _, on_durable in group:
            if on_durable is not None:
                on_durable()
        if not self.full():
            self._room.set()
        self._committed.set()

    def _write(self, first_id: int, data: bytes) -> None:
        """Worker thread: append one commit group and fsync it. On failure, cut the partial write."""
        if self._fd is None or self._active_size >= self._segment_bytes:
            self._rotate(first_id)
        assert self._fd is not None  # set by _rotate
        try:
            written = os.write(self._fd, data)
            if written == len(data):
                os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, self._active_size)
            raise
        if written != len(data):
            os.ftruncate(self._fd, self._active_size)
            raise OSError(f"short write: {written} of {len(data)} bytes")
        self._active_size += len(data)
        self.stats.fsyncs += 1

    def _rotate(self, first_id: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        path = records.segment_path(self.directory, first_id)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._active_first, self._active_size = first_id, os.fstat(self._fd).st_size
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new file's directory entry must survive a crash too
        finally:
            os.close(dir_fd)

    # -- draining --------------------------------------------------------------------------------
    def mark_drained(self, record_id: int) -> None:
        """Called in id order once a record's lines are in InfluxDB."""
        self.drained_id = record_id
        self.stats.records_drained += 1
        self.stats.depth_records = self.next_id - 1 - record_id
        while self._groups and self._groups[0][0] <= record_id:
            self.undrained_bytes -= self._groups.popleft()[2]
        if not self.full():
            self._room.set()

    def oldest_age_s(self) -> float:
        if not self._groups or self.drained_id >= self.next_id - 1:
            return 0.0
        return max(0.0, (self._clock_ms() - self._groups[0][1]) / 1000)

    def checkpoint(self) -> None:
        """Persist the drained id and delete segments wholly drained (sync I/O: small, once a second)."""
        self.stats.oldest_age_s = self.oldest_age_s()
        if self.drained_id == self._checkpointed:
            return
        target = self.directory / CHECKPOINT
        tmp = target.with_suffix(".tmp")
        with tmp.open("w") as handle:
            handle.write(str(self.drained_id))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
        self._checkpointed = self.drained_id
        self._delete_drained_segments()
        if not self.full():
            self._room.set()

    def _delete_drained_segments(self) -> None:
        paths = records.segments(self.directory)
        for path, following in itertools.pairwise(paths):
            last_id_in_path = records.first_id_of(following) - 1
            if last_id_in_path <= self.drained_id and records.first_id_of(path) != self._active_first:
                self.stats.bytes_on_disk -= path.stat().st_size
                path.unlink()

    async def close(self) -> None:
        """Let the committer write what is pending and stop; the file is closed by ``release``."""
        self._closing = True
        self._wakeup.set()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def read_range(self, reader: records.SegmentReader, first_id: int, max_lines: int) -> list[Record]:
        """Worker thread: committed records from ``first_id`` on, up to about ``max_lines`` lines."""
        found: list[Record] = []
        lines = 0
        record_id = first_id
        while record_id < self.next_id and lines < max_lines:
            record = reader.read(record_id)
            found.append(record)
            lines += len(record.lines)
            record_id += 1
        return found
