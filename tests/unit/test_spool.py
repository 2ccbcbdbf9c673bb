"""The write-ahead spool on a real filesystem (tmp_path) with a fake InfluxDB writer."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from citytelemetry.sink.backoff import Backoff
from citytelemetry.sink.buffer import BufferedSink
from citytelemetry.sink.errors import RetryableWriteError
from citytelemetry.sink.spool import Spool, SpooledSink, SpoolError
from citytelemetry.sink.spool import records as spool_records


class SwitchableWriter:
    """A fake InfluxDB that can be down; records every line it accepted."""

    def __init__(self) -> None:
        self.down = False
        self.lines: list[bytes] = []

    async def write(self, lines: Sequence[bytes]) -> None:
        if self.down:
            raise RetryableWriteError("HTTP 503")
        self.lines.extend(lines)

    async def aclose(self) -> None:
        return None


def make_sink(directory: Path, writer: SwitchableWriter, *, memory_lines: int = 1000,
              max_bytes: int = 10 * 1024 * 1024, segment_bytes: int = 4096) -> SpooledSink:
    spool = Spool(directory, max_bytes=max_bytes, segment_bytes=segment_bytes)
    spool.open()
    buffer = BufferedSink(writer, on_refused=lambda line, msg: None, batch_size=50, flush_interval_s=0.01,
                          max_buffered_lines=100, backoff=Backoff(base_s=0.005, cap_s=0.01))
    return SpooledSink(spool, buffer, memory_lines=memory_lines, read_lines=30)


async def wait_until(condition: object, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)


def lines_of(n: int, tag: str = "") -> list[bytes]:
    return [f"m{tag} v={i}i {i}".encode() for i in range(n)]


async def test_acknowledged_once_fsynced_then_written_in_order(tmp_path: Path) -> None:
    writer = SwitchableWriter()
    sink = make_sink(tmp_path, writer)
    task = asyncio.create_task(sink.run())
    acked: list[int] = []
    for i in range(20):
        await sink.put([f"m v={i}i {i}".encode()], lambda i=i: acked.append(i))
    await sink.wait_settled()
    assert acked == list(range(20))
    await wait_until(lambda: len(writer.lines) == 20)
    assert writer.lines == [f"m v={i}i {i}".encode() for i in range(20)]
    await sink.close()
    await task
    assert sink.spool.drained_id == 20
    assert (tmp_path / "drained").read_text() == "20"


async def test_outage_keeps_acknowledging_from_disk_and_drains_everything_in_order(tmp_path: Path) -> None:
    writer = SwitchableWriter()
    writer.down = True
    sink = make_sink(tmp_path, writer, memory_lines=40)
    task = asyncio.create_task(sink.run())
    acked = 0

    def ack() -> None:
        nonlocal acked
        acked += 1

    expected = []
    for batch in range(100):
        lines = lines_of(5, tag=str(batch))
        expected.extend(lines)
        await sink.put(lines, ack)
        if batch % 10 == 9:
            await sink.wait_settled()  # ten commit groups of ~1.2 KiB: the 4 KiB segments rotate
    assert acked == 100  # durable in the spool although InfluxDB is down
    assert writer.lines == []
    assert len(spool_records.segments(tmp_path)) > 1  # 4 KiB segments: the backlog spans files
    writer.down = False
    await wait_until(lambda: len(writer.lines) >= len(expected))
    assert writer.lines == expected
    await sink.close()
    await task
    assert len(spool_records.segments(tmp_path)) == 1  # drained segments were deleted


async def test_restart_replays_what_was_not_drained(tmp_path: Path) -> None:
    writer = SwitchableWriter()
    writer.down = True
    sink = make_sink(tmp_path, writer)
    task = asyncio.create_task(sink.run())
    await sink.put(lines_of(3, "a"))
    await sink.put(lines_of(2, "b"))
    await sink.wait_settled()
    task.cancel()  # a crash: nothing drained, nothing checkpointed beyond 0
    await asyncio.gather(task, return_exceptions=True)

    writer.down = False
    again = make_sink(tmp_path, writer)
    assert again.spool.next_id == 3
    assert again.spool.stats.depth_records == 2
    task = asyncio.create_task(again.run())
    await wait_until(lambda: len(writer.lines) == 5)
    assert writer.lines == lines_of(3, "a") + lines_of(2, "b")
    await again.close()
    await task


def test_a_torn_tail_is_cut_at_recovery(tmp_path: Path) -> None:
    segment = spool_records.segment_path(tmp_path, 1)
    whole = spool_records.encode(1, [b"m v=1i 1"], 0) + spool_records.encode(2, [b"m v=2i 2"], 0)
    segment.write_bytes(whole + spool_records.encode(3, [b"m v=3i 3"], 0)[:-4])
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    assert spool.next_id == 3
    assert segment.stat().st_size == len(whole)
    spool.release()


def test_one_directory_one_instance(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    first.open()
    with pytest.raises(SpoolError, match="in use by another process"):
        Spool(tmp_path, max_bytes=1 << 20).open()
    first.release()


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolError, match=f"spool directory {blocker / 'spool'} is not writable"):
        Spool(blocker / "spool", max_bytes=1 << 20).open()


async def test_write_failure_acknowledges_nothing_until_the_disk_works(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    writer = SwitchableWriter()
    sink = make_sink(tmp_path, writer)
    failures = {"left": 3}
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr("citytelemetry.sink.spool.wal.os.write", failing_write)
    monkeypatch.setattr("citytelemetry.sink.spool.wal.Backoff.delay", lambda self, attempt, retry=None: 0.05)
    task = asyncio.create_task(sink.run())
    acked: list[bool] = []
    await sink.put([b"m v=1i 1"], lambda: acked.append(True))
    await asyncio.sleep(0.02)
    assert acked == []
    assert sink.spool.stats.last_error == "spool write failed: [Errno 28] No space left on device"
    await wait_until(lambda: acked == [True])
    assert sink.spool.stats.write_failures == 3
    assert sink.spool.stats.last_error == ""
    await wait_until(lambda: writer.lines == [b"m v=1i 1"])
    await sink.close()
    await task


async def test_full_spool_pushes_back(tmp_path: Path) -> None:
    writer = SwitchableWriter()
    writer.down = True
    sink = make_sink(tmp_path, writer, max_bytes=1024 * 1024)
    task = asyncio.create_task(sink.run())
    await sink.put(lines_of(5))
    await sink.wait_settled()
    await sink.put(lines_of(5))
    await sink.wait_settled()
    sink.spool._max_bytes = sink.spool.stats.bytes_on_disk  # now full: the next put must wait
    blocked = asyncio.create_task(sink.put(lines_of(1)))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    writer.down = False
    await wait_until(lambda: len(writer.lines) == 10)
    sink.spool.checkpoint()  # drained segments are deleted at checkpoints, making room
    await asyncio.wait_for(blocked, 5)
    await sink.close()
    await task
