"""BufferedSink with a fake writer: batching, ordering of durability callbacks, retry, split, refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from citytelemetry.sink.backoff import Backoff
from citytelemetry.sink.buffer import BufferedSink
from citytelemetry.sink.errors import RetryableWriteError
from citytelemetry.testing import CapturingWriter, wait_until

FakeWriter = CapturingWriter  # the shared fake (citytelemetry.testing)


def fast_backoff() -> Backoff:
    return Backoff(base_s=0.001, cap_s=0.002)


async def run_until_empty(sink: BufferedSink) -> None:
    task = asyncio.create_task(sink.run())
    await asyncio.wait_for(sink.wait_empty(), 5)
    await sink.close()
    await asyncio.wait_for(task, 5)


async def test_flushes_on_size_in_order_and_settles_callbacks_in_order() -> None:
    writer = FakeWriter()
    settled: list[str] = []
    sink = BufferedSink(writer, on_refused=lambda line, msg: None, batch_size=3, flush_interval_s=10,
                        backoff=fast_backoff())
    await sink.put([b"a1", b"a2"], lambda: settled.append("a"))
    await sink.put([b"b1", b"b2"], lambda: settled.append("b"))
    await sink.put([], lambda: settled.append("empty"))
    await run_until_empty(sink)
    assert writer.batches == [[b"a1", b"a2", b"b1"], [b"b2"]]
    assert settled == ["a", "b", "empty"]
    assert sink.stats.lines_written == 4
    assert sink.stats.batches_written == 2


async def test_flushes_on_interval() -> None:
    writer = FakeWriter()
    sink = BufferedSink(writer, on_refused=lambda line, msg: None, batch_size=100, flush_interval_s=0.05)
    task = asyncio.create_task(sink.run())
    await sink.put([b"x"])
    await wait_until(lambda: writer.batches == [[b"x"]], timeout_s=5)
    await sink.close()
    await asyncio.wait_for(task, 5)


class SlowWriter(FakeWriter):
    """Each write takes ``seconds``; records when each started and ended (loop time)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.starts: list[float] = []
        self.ends: list[float] = []

    async def write(self, lines: Sequence[bytes]) -> None:
        loop = asyncio.get_running_loop()
        self.starts.append(loop.time())
        await asyncio.sleep(self.seconds)
        self.batches.append(list(lines))
        self.ends.append(loop.time())


async def test_lines_that_arrive_during_a_write_wait_one_interval_in_all_not_one_more() -> None:
    writer = SlowWriter(0.4)
    sink = BufferedSink(writer, on_refused=lambda line, msg: None, batch_size=100, flush_interval_s=0.5)
    task = asyncio.create_task(sink.run())
    loop = asyncio.get_running_loop()
    await sink.put([b"a"])
    while not writer.starts:  # the first write starts once a's interval is over
        await asyncio.sleep(0.01)
    await sink.put([b"b"])  # arrives during that write
    b_arrived = loop.time()
    while len(writer.batches) < 2:  # not wait_empty(): that asks for an immediate flush
        await asyncio.sleep(0.01)
    assert writer.batches == [[b"a"], [b"b"]]
    # b waits about one interval from its arrival (0.5 s), not the rest of the write and then a whole
    # interval more (0.4 + 0.5 s, as before)
    assert writer.starts[1] - b_arrived < 0.7
    await sink.close()
    await asyncio.wait_for(task, 5)


async def test_retryable_errors_retry_the_same_batch_until_written() -> None:
    writer = FakeWriter(fail_first=3)
    done: list[bool] = []
    sink = BufferedSink(writer, on_refused=lambda line, msg: None, batch_size=2, backoff=fast_backoff())
    await sink.put([b"1", b"2"], lambda: done.append(True))
    await run_until_empty(sink)
    assert writer.attempts == 4
    assert writer.batches == [[b"1", b"2"]]
    assert sink.stats.retries == 3
    assert done == [True]


def test_backoff_honours_retry_after_and_caps() -> None:
    backoff = Backoff(base_s=0.1, cap_s=2.0)
    assert backoff.delay(0, retry_after_s=7.0) == 7.0
    assert all(1.0 <= backoff.delay(30) <= 2.0 for _ in range(50))


async def test_too_large_batches_are_split() -> None:
    writer = FakeWriter(max_lines=2)
    sink = BufferedSink(writer, on_refused=lambda line, msg: None, batch_size=5, backoff=fast_backoff())
    await sink.put([b"1", b"2", b"3", b"4", b"5"])
    await run_until_empty(sink)
    assert [line for batch in writer.batches for line in batch] == [b"1", b"2", b"3", b"4", b"5"]
    assert max(len(b) for b in writer.batches) == 2


async def test_refused_lines_are_isolated_and_the_rest_lands() -> None:
    writer = FakeWriter(bad=frozenset({b"bad1", b"bad2"}))
    refused: list[tuple[bytes, str]] = []
    settled: list[int] = []
    sink = BufferedSink(writer, on_refused=lambda line, msg: refused.append((line, msg)), batch_size=8,
                        backoff=fast_backoff())
    lines = [b"1", b"bad1", b"2", b"3", b"4", b"bad2", b"5", b"6"]
    await sink.put(lines, lambda: settled.append(1))
    await run_until_empty(sink)
    assert sorted(line for batch in writer.batches for line in batch) == [b"1", b"2", b"3", b"4", b"5", b"6"]
    assert [line for line, _ in refused] == [b"bad1", b"bad2"]
    assert refused[0][1] == 'partial write: unable to parse "bad"'
    assert settled == [1]
    assert sink.stats.lines_dead_lettered == 2
    assert sink.stats.lines_written == 6


async def test_put_waits_while_the_buffer_is_full() -> None:
    writer = FakeWriter(fail_first=1_000_000)  # InfluxDB down
    sink = BufferedSink(writer, on_refused=lambda line, msg: None, batch_size=2, max_buffered_lines=4,
                        backoff=fast_backoff())
    task = asyncio.create_task(sink.run())
    await sink.put([b"1", b"2", b"3", b"4"])
    blocked = asyncio.create_task(sink.put([b"5"]))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    assert sink.pending == 4
    task.cancel()
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class GatedWriter:
    """Each write waits for its own gate: the test decides the order in which writes finish."""

    def __init__(self, fail_first_attempt_of: frozenset[bytes] = frozenset()) -> None:
        self.started: list[list[bytes]] = []
        self.gates: dict[bytes, asyncio.Event] = {}
        self.written: list[list[bytes]] = []
        self._fail_once = set(fail_first_attempt_of)

    async def write(self, lines: Sequence[bytes]) -> None:
        self.started.append(list(lines))
        await self.gates.setdefault(lines[0], asyncio.Event()).wait()
        if lines[0] in self._fail_once:
            self._fail_once.discard(lines[0])
            raise RetryableWriteError("HTTP 503: busy")
        self.written.append(list(lines))

    def open(self, first_line: bytes) -> None:
        self.gates.setdefault(first_line, asyncio.Event()).set()

    async def aclose(self) -> None:
        return None


async def _until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.001)


async def test_up_to_write_concurrency_batches_are_in_flight_at_once() -> None:
    writer = GatedWriter()
    sink = BufferedSink(writer, on_refused=lambda line, msg: None, batch_size=2, flush_interval_s=10,
                        backoff=fast_backoff(), write_concurrency=2)
    for name in (b"a", b"b", b"c"):
        await sink.put([name + b"1", name + b"2"])
    task = asyncio.create_task(sink.run())
    await _until(lambda: len(writer.started) == 2)
    await asyncio.sleep(0.02)
    assert writer.started == [[b"a1", b"a2"], [b"b1", b"b2"]]  # the third waits for a free slot
    writer.open(b"a1")
    await _until(lambda: len(writer.started) == 3)
    assert writer.started[2] == [b"c1", b"c2"]
    writer.open(b"b1")
    writer.open(b"c1")
    await asyncio.wait_for(sink.wait_empty(), 2)
    await sink.close()
    await asyncio.wait_for(task, 2)
    assert sink.stats.lines_written == 6


async def test_batches_settle_in_the_order_cut_whatever_order_they_are_written_in() -> None:
    writer = GatedWriter(fail_first_attempt_of=frozenset({b"a1"}))
    settled: list[str] = []
    sink = BufferedSink(writer, on_refused=lambda line, msg: None, batch_size=2, flush_interval_s=10,
                        backoff=fast_backoff(), write_concurrency=2)
    await sink.put([b"a1", b"a2"], lambda: settled.append("a"))
    await sink.put([b"b1", b"b2"], lambda: settled.append("b"))
    task = asyncio.create_task(sink.run())
    await _until(lambda: len(writer.started) == 2)
    writer.open(b"b1")  # the later batch is written first ...
    await _until(lambda: writer.written == [[b"b1", b"b2"]])
    await asyncio.sleep(0.02)
    assert settled == []  # ... but settles only after the earlier one
    assert sink.pending == 4
    writer.open(b"a1")  # the earlier batch fails once (503), is retried, then written
    await asyncio.wait_for(sink.wait_empty(), 2)
    assert writer.written == [[b"b1", b"b2"], [b"a1", b"a2"]]
    assert settled == ["a", "b"]
    assert sink.stats.retries == 1
    await sink.close()
    await asyncio.wait_for(task, 2)


class FlakyOnceWriter:
    """The first attempt of each batch fails with 503; batch "b" asks to be retried in 30 s."""

    def __init__(self) -> None:
        self.failed: set[bytes] = set()
        self.written: list[list[bytes]] = []

    async def write(self, lines: Sequence[bytes]) -> None:
        await asyncio.sleep(0.005)
        if lines[0] not in self.failed:
            self.failed.add(lines[0])
            raise RetryableWriteError("HTTP 503: busy", retry_after_s=30.0 if lines[0] == b"b1" else None)
        self.written.append(list(lines))

    async def aclose(self) -> None:
        return None


async def test_a_batch_backing_off_retries_at_once_when_another_gets_through() -> None:
    writer = FlakyOnceWriter()
    sink = BufferedSink(writer, on_refused=lambda line, msg: None, batch_size=2, flush_interval_s=10,
                        backoff=fast_backoff(), write_concurrency=2)
    await sink.put([b"a1", b"a2"])
    await sink.put([b"b1", b"b2"])
    task = asyncio.create_task(sink.run())
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(sink.wait_empty(), 2)  # "b" would otherwise wait out its 30 s Retry-After
    assert asyncio.get_running_loop().time() - started < 1.0
    assert sorted(writer.written) == [[b"a1", b"a2"], [b"b1", b"b2"]]
    assert sink.stats.retries == 2
    await sink.close()
    await asyncio.wait_for(task, 2)


def _last_write_gauge(sink: BufferedSink) -> float:
    from prometheus_client import generate_latest

    from citytelemetry.observability.prometheus import registry_for
    from citytelemetry.observability.stats import PipelineStats

    text = generate_latest(registry_for(PipelineStats(write=sink.stats))).decode()
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith("citytelemetry_last_write_timestamp_seconds ")))


async def test_metrics_give_the_unix_time_of_the_last_acknowledged_write() -> None:
    import time

    sink = BufferedSink(FakeWriter(), on_refused=lambda line, msg: None, batch_size=1, flush_interval_s=10)
    assert _last_write_gauge(sink) == 0.0  # nothing written yet: 0, not the epoch of a monotonic clock
    before = time.time()
    await sink.put([b"a"])
    await run_until_empty(sink)
    after = time.time()
    assert before - 0.001 <= _last_write_gauge(sink) <= after + 0.001  # converted from monotonic at scrape
