"""The write-ahead spool: on a real filesystem (tmp_path) and, for faults, on the in-memory one.

Faults are inputs through the spool's I/O seam (``citytelemetry.testing.MemoryFileOps``), never
monkeypatched ``os`` calls or private fields.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from citytelemetry.sink.backoff import Backoff
from citytelemetry.sink.buffer import BufferedSink
from citytelemetry.sink.spool import FileOps, OsFileOps, SeqRange, Spool, SpooledSink, SpoolError, SpoolWriteError
from citytelemetry.sink.spool import records as spool_records
from citytelemetry.sink.spool.writer import SegmentWriter
from citytelemetry.testing import CapturingWriter, Fault, MemoryFileOps, wait_until

DIR = Path("/spool")
FAST = Backoff(base_s=0.005, cap_s=0.01)


def make_spool(directory: Path, *, ops: FileOps | None = None, max_bytes: int = 10 * 1024 * 1024,
               segment_bytes: int = 4096) -> Spool:
    spool = Spool(directory, max_bytes=max_bytes, segment_bytes=segment_bytes, ops=ops, backoff=FAST)
    spool.open()
    return spool


def make_sink(directory: Path, writer: CapturingWriter, *, ops: FileOps | None = None, memory_lines: int = 1000,
              max_bytes: int = 10 * 1024 * 1024, segment_bytes: int = 4096) -> SpooledSink:
    spool = make_spool(directory, ops=ops, max_bytes=max_bytes, segment_bytes=segment_bytes)
    buffer = BufferedSink(writer, on_refused=lambda line, msg: None, batch_size=50, flush_interval_s=0.01,
                          max_buffered_lines=100, backoff=FAST)
    return SpooledSink(spool, buffer, memory_lines=memory_lines, read_lines=30, checkpoint_every_s=0.02)


def lines_of(n: int, tag: str = "") -> list[bytes]:
    return [f"m{tag} v={i}i {i}".encode() for i in range(n)]


def reading(device: str, seq: int) -> bytes:
    """A line as ``line_protocol.reading_line`` writes it: device tag, ``seq`` the last field."""
    return f"gas,device={device},site=hunnan o2=20.9,seq={seq}i {seq}000000".encode()


async def stop(sink: SpooledSink, task: asyncio.Task[None]) -> None:
    await sink.close()
    await task


# -- the happy paths, on a real filesystem ---------------------------------------------------------
async def test_acknowledged_once_fsynced_then_written_in_order(tmp_path: Path) -> None:
    writer = CapturingWriter()
    sink = make_sink(tmp_path, writer)
    task = asyncio.create_task(sink.run())
    acked: list[int] = []
    for i in range(20):
        await sink.put([f"m v={i}i {i}".encode()], lambda i=i: acked.append(i))
    await sink.wait_settled()
    assert acked == list(range(20))
    await wait_until(lambda: len(writer.lines) == 20)
    assert writer.lines == [f"m v={i}i {i}".encode() for i in range(20)]
    await stop(sink, task)
    assert sink.spool.drained_id == 20
    assert (tmp_path / "drained").read_text().split() == ["20", "20"]  # drained id, committed id


async def test_outage_keeps_acknowledging_from_disk_and_drains_everything_in_order(tmp_path: Path) -> None:
    writer = CapturingWriter()
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
    ops = OsFileOps()
    assert len(spool_records.segments(ops, tmp_path)) > 1  # 4 KiB segments: the backlog spans files
    writer.down = False
    await wait_until(lambda: len(writer.lines) >= len(expected))
    assert writer.lines == expected
    await stop(sink, task)
    assert len(spool_records.segments(ops, tmp_path)) == 1  # drained segments were deleted


async def test_restart_replays_what_was_not_drained(tmp_path: Path) -> None:
    writer = CapturingWriter()
    writer.down = True
    sink = make_sink(tmp_path, writer)
    task = asyncio.create_task(sink.run())
    await sink.put(lines_of(3, "a"))
    await sink.put(lines_of(2, "b"))
    await sink.wait_settled()
    task.cancel()  # a crash: nothing drained
    await asyncio.gather(task, return_exceptions=True)

    writer.down = False
    again = make_sink(tmp_path, writer)
    assert again.spool.next_id == 3
    assert again.spool.stats.depth_records == 2
    assert again.spool.loss is None
    task = asyncio.create_task(again.run())
    await wait_until(lambda: len(writer.lines) == 5)
    assert writer.lines == lines_of(3, "a") + lines_of(2, "b")
    await stop(again, task)


def test_a_ledger_from_before_the_committed_id_still_loads(tmp_path: Path) -> None:
    (tmp_path / "drained").write_text("7")
    spool = make_spool(tmp_path)
    assert (spool.drained_id, spool.next_id) == (7, 8)
    spool.release()


def test_one_directory_one_instance(tmp_path: Path) -> None:
    first = make_spool(tmp_path)
    with pytest.raises(SpoolError, match="in use by another process"):
        make_spool(tmp_path)
    first.release()


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolError, match=f"spool directory {blocker / 'spool'} is not writable"):
        make_spool(blocker / "spool")


# -- write faults: nothing acknowledged until durable, and said in words -----------------------------
async def run_one_put(fs: MemoryFileOps, lines: list[bytes]) -> tuple[SpooledSink, asyncio.Task[None], list[bool]]:
    sink = make_sink(DIR, CapturingWriter(), ops=fs)
    task = asyncio.create_task(sink.run())
    acked: list[bool] = []
    await sink.put(lines, lambda: acked.append(True))
    return sink, task, acked


@pytest.mark.parametrize(("fault", "words"), [
    (Fault.ENOSPC, "spool disk full: cannot append 32 bytes to /spool (No space left on device)"),
    (Fault.EIO, "spool disk failing (I/O error): cannot append 32 bytes to /spool (Input/output error)"),
])
async def test_a_failing_write_acknowledges_nothing_and_says_why(fault: Fault, words: str) -> None:
    fs = MemoryFileOps()
    fs.inject("write", fault, times=3)
    sink, task, acked = await run_one_put(fs, [b"m v=1i 1"])
    await wait_until(lambda: sink.spool.stats.write_failures >= 1)
    assert acked == []
    assert sink.spool.stats.last_error == words
    await wait_until(lambda: acked == [True])
    assert sink.spool.stats.write_failures == 3
    assert sink.spool.stats.last_error == ""
    await wait_until(lambda: sink.buffer.stats.lines_written == 1)
    await stop(sink, task)


async def test_a_failed_fsync_is_cut_back_so_no_partial_group_stays_on_disk() -> None:
    fs = MemoryFileOps()
    fs.inject("sync", Fault.EIO)
    sink, task, acked = await run_one_put(fs, [b"m v=1i 1"])
    await wait_until(lambda: acked == [True])
    assert sink.spool.stats.write_failures == 1
    segment = spool_records.segment_path(DIR, 1)
    assert bytes(fs.files[segment].data) == spool_records.encode(1, [b"m v=1i 1"], _appended(fs, segment))
    await stop(sink, task)


def _appended(fs: MemoryFileOps, segment: Path) -> int:
    return next(spool_records.scan(bytes(fs.files[segment].data)))[1].appended_ms


async def test_a_short_write_is_continued_not_failed() -> None:
    fs = MemoryFileOps()
    fs.inject("write", Fault.SHORT, times=2)
    sink, task, acked = await run_one_put(fs, lines_of(20))
    await wait_until(lambda: acked == [True])
    assert sink.spool.stats.write_failures == 0
    assert fs.calls["write"] == 3
    await stop(sink, task)


async def test_a_full_disk_is_named_as_such_not_as_a_short_write() -> None:
    fs = MemoryFileOps(capacity=100)  # the ledger and the record do not fit
    sink, task, acked = await run_one_put(fs, lines_of(20))
    await wait_until(lambda: sink.spool.stats.write_failures >= 2)
    assert acked == []
    assert sink.spool.stats.last_error.startswith("spool disk full: cannot append ")
    fs.capacity = None
    await wait_until(lambda: acked == [True])
    await stop(sink, task)


def test_a_write_that_does_not_fit_is_cut_back_and_called_disk_full() -> None:
    fs = MemoryFileOps(capacity=100)
    fs.make_dir(DIR)
    writer = SegmentWriter(DIR, fs, segment_bytes=4096)
    data = spool_records.encode(1, lines_of(20), 0)
    with pytest.raises(SpoolWriteError) as caught:
        writer.append(1, data)
    assert caught.value.full
    assert str(caught.value) == f"spool disk full: cannot append {len(data)} bytes to /spool (No space left on device)"
    assert fs.calls["write"] == 2  # a short write of 100 bytes, continued: then ENOSPC
    assert fs.files[spool_records.segment_path(DIR, 1)].data == b""  # cut back: no partial group stays
    fs.capacity = None
    writer.append(1, data)
    assert bytes(fs.files[spool_records.segment_path(DIR, 1)].data) == data


async def test_a_disk_smaller_than_one_segment_does_not_stall_once_everything_is_drained() -> None:
    fs = MemoryFileOps(capacity=3000)  # a 4 KiB segment never fills: the disk does, with drained data
    writer = CapturingWriter()
    sink = make_sink(DIR, writer, ops=fs)
    task = asyncio.create_task(sink.run())
    expected = []
    for i in range(60):
        lines = lines_of(3, tag=str(i))
        expected.extend(lines)
        await sink.put(lines)
        await sink.wait_settled()  # one record per group: ~95 bytes each, 30 fill the disk
    await wait_until(lambda: len(writer.lines) == len(expected), timeout_s=10)
    assert writer.lines == expected
    assert sink.spool.stats.write_failures >= 1  # the disk did fill ...
    assert len(spool_records.segments(fs, DIR)) == 1  # ... and the drained segments were freed
    await stop(sink, task)


async def test_a_full_spool_pushes_back_until_drained() -> None:
    group = len(spool_records.encode(1, lines_of(5), 0))
    writer = CapturingWriter()
    writer.down = True
    sink = make_sink(DIR, writer, ops=MemoryFileOps(), max_bytes=2 * group)
    task = asyncio.create_task(sink.run())
    await sink.put(lines_of(5))
    await sink.wait_settled()
    await sink.put(lines_of(5))
    await sink.wait_settled()
    blocked = asyncio.create_task(sink.put(lines_of(1)))
    await asyncio.sleep(0.05)  # a negative check: the put would have returned by now if it were not held
    assert not blocked.done()
    writer.down = False
    await asyncio.wait_for(blocked, 5)
    await wait_until(lambda: len(writer.lines) == 11)
    await stop(sink, task)


# -- recovery: torn tails and losses ----------------------------------------------------------------
def write_records(fs: MemoryFileOps, first: int, *payloads: list[bytes]) -> Path:
    fs.make_dir(DIR)
    segment = spool_records.segment_path(DIR, first)
    data = b"".join(spool_records.encode(first + i, lines, 0) for i, lines in enumerate(payloads))
    fs.replace(segment, data)
    return segment


def test_a_torn_unacknowledged_tail_is_cut_without_a_loss(caplog: pytest.LogCaptureFixture) -> None:
    fs = MemoryFileOps()
    segment = write_records(fs, 1, [b"m v=1i 1"], [b"m v=2i 2"])
    whole = fs.size(segment)
    fs.files[segment].data += spool_records.encode(3, [b"m v=3i 3"], 0)[:-4]
    fs.files[segment].synced = bytes(fs.files[segment].data)
    fs.replace(DIR / "drained", b"0 2")  # the ledger: 2 acknowledged; record 3 was in flight
    with caplog.at_level(logging.WARNING):
        spool = make_spool(DIR, ops=fs)
    assert spool.next_id == 3
    assert fs.size(segment) == whole
    assert spool.loss is None
    assert spool.stats.records_lost == 0
    assert "a write in flight at a crash, never acknowledged" in caplog.text
    spool.release()


def test_acknowledged_records_cut_off_the_newest_segment_are_reported_lost(caplog: pytest.LogCaptureFixture) -> None:
    fs = MemoryFileOps()
    segment = write_records(fs, 1, [reading("a", 1), reading("b", 7)], [reading("a", 2)],
                            [reading("a", 3), reading("b", 8)], [reading("b", 9)])
    fs.replace(DIR / "drained", b"0 4")
    fs.cut(segment, len(spool_records.encode(1, [reading("a", 1), reading("b", 7)], 0))
           + len(spool_records.encode(2, [reading("a", 2)], 0)))  # records 3 and 4 gone
    with caplog.at_level(logging.ERROR):
        spool = make_spool(DIR, ops=fs)
    assert spool.loss is not None
    assert (spool.loss.records, spool.loss.ids) == (2, ((3, 4),))
    assert spool.loss.seqs == (SeqRange("a", 3, None), SeqRange("b", 8, None))  # no later reading bounds them
    assert spool.stats.records_lost == 2
    assert "2 acknowledged records lost from the spool (ids 3-4)" in caplog.text
    assert "a seq 3-, b seq 8-" in caplog.text
    assert spool.next_id == 5  # lost ids are not used again: the ledger keeps them as known
    assert spool.stats.depth_records == 2
    spool.release()
    again = make_spool(DIR, ops=fs)
    assert again.loss is None  # reported once
    again.release()


async def test_a_lost_middle_segment_is_reported_and_the_rest_is_drained() -> None:
    fs = MemoryFileOps()
    write_records(fs, 1, [reading("a", 1)], [reading("a", 2), reading("b", 5)])
    write_records(fs, 3, [reading("a", 3)], [reading("b", 6)])
    write_records(fs, 5, [reading("a", 5)], [reading("b", 7)])
    fs.remove(spool_records.segment_path(DIR, 3))
    fs.replace(DIR / "drained", b"0 6")
    writer = CapturingWriter()
    writer.down = True
    sink = make_sink(DIR, writer, ops=fs)
    assert sink.spool.loss is not None
    assert (sink.spool.loss.records, sink.spool.loss.ids) == (2, ((3, 4),))
    assert sink.spool.loss.seqs == (SeqRange("a", 3, 4), SeqRange("b", 6, 6))
    assert sink.spool.stats.depth_records == 4  # 6 ids, 2 of them lost
    sink.spool.release()

    again = make_sink(DIR, writer, ops=fs)  # restarted before anything drained
    assert again.spool.loss is None  # the gap is known: not reported twice
    writer.down = False
    task = asyncio.create_task(again.run())
    await wait_until(lambda: len(writer.lines) == 5)
    assert writer.lines == [reading("a", 1), reading("a", 2), reading("b", 5), reading("a", 5), reading("b", 7)]
    await wait_until(lambda: again.spool.stats.depth_records == 0)
    await stop(again, task)
    assert fs.read_bytes(DIR / "drained").split() == [b"6", b"6"]  # the gap drained past: forgotten


def test_a_commit_group_is_encoded_as_its_records_one_by_one_and_scans_back() -> None:
    group = [([b"a,x=1 v=1 1"], None), ([b"b v=2 2", b"b v=3 3", b"b v=4 4"], None), ([], None)]
    data = spool_records.encode_group(41, group, 1_700_000_000_000)
    assert data == b"".join(spool_records.encode(41 + i, lines, 1_700_000_000_000)
                            for i, (lines, _) in enumerate(group))
    assert [(r.id, r.lines) for _, r in spool_records.scan(data)] == [
        (41, [b"a,x=1 v=1 1"]), (42, [b"b v=2 2", b"b v=3 3", b"b v=4 4"]), (43, [])]


def test_recent_records_keep_to_their_bound_and_are_taken_in_id_order() -> None:
    from citytelemetry.sink.spool.recent import RecentRecords, joined_lines

    recent = RecentRecords(limit_lines=3)
    recent.keep(10, [([b"l1"], None), ([b"l2", b"l3"], None), ([b"l4"], None)])  # 12 is over the bound
    assert recent.lines == 3
    assert recent.take(10) == [(10, [b"l1"]), (11, [b"l2", b"l3"])]
    assert recent.lines == 0
    recent.keep(13, [([b"l5"], None)])
    assert recent.take(12) == []  # 12 was never kept: the feeder reads it from disk
    assert recent.take(13) == [(13, [b"l5"])]
    assert recent.take(14) == []
    assert joined_lines([(10, [b"l1"]), (11, [b"l2", b"l3"])]) == [b"l1", b"l2", b"l3"]
    assert joined_lines([(13, [b"l5"])]) == [b"l5"]
