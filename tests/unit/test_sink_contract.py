"""The sink contract: one set of cases that every sink must pass (Telegraf's buffer_suite_test.go).

Run over the ``BufferedSink`` (acknowledges once written to InfluxDB) and the ``SpooledSink``
(acknowledges once fsync'd in the spool, then drains through a ``BufferedSink``). Each case states a
promise the pipeline relies on: flush on size, on interval and once more at close; ``on_durable`` once
per put, in put order; back-pressure instead of growth; refused lines handed over, the rest landed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from citytelemetry.contracts import Sink
from citytelemetry.sink.backoff import Backoff
from citytelemetry.sink.buffer import BufferedSink
from citytelemetry.sink.spool import Spool, SpooledSink
from citytelemetry.testing import CapturingWriter, wait_until

FAST = Backoff(base_s=0.005, cap_s=0.01)
LONG_S = 60.0  # an interval that never comes during a test


@dataclass
class Built:
    sink: Sink
    writer: CapturingWriter
    refused: list[tuple[bytes, str]] = field(default_factory=list)
    # Until what was put counts against the sink's bound: at once for the buffer; for the spool, once
    # its group commit is fsync'd (a put returned before then may be followed by many more).
    taken: Callable[[], Awaitable[None]] = field(default=lambda: asyncio.sleep(0))


Factory = Callable[..., Built]


def buffered(tmp_path: Path, *, writer: CapturingWriter, batch_size: int = 1000, interval_s: float = LONG_S,
             bound_lines: int = 10_000) -> Built:
    del tmp_path
    built = Built(sink=None, writer=writer)  # type: ignore[arg-type]
    built.sink = BufferedSink(writer, on_refused=lambda line, why: built.refused.append((line, why)),
                              batch_size=batch_size, flush_interval_s=interval_s, max_buffered_lines=bound_lines,
                              backoff=FAST)
    return built


def spooled(tmp_path: Path, *, writer: CapturingWriter, batch_size: int = 1000, interval_s: float = LONG_S,
            bound_lines: int = 10_000) -> Built:
    built = Built(sink=None, writer=writer)  # type: ignore[arg-type]
    buffer = BufferedSink(writer, on_refused=lambda line, why: built.refused.append((line, why)),
                          batch_size=batch_size, flush_interval_s=interval_s, max_buffered_lines=10_000, backoff=FAST)
    spool = Spool(tmp_path / "spool", max_bytes=bound_lines * 40, backoff=FAST)  # ~40 bytes a one-line record
    spool.open()
    built.sink = SpooledSink(spool, buffer, memory_lines=100, read_lines=50, checkpoint_every_s=0.02)
    built.taken = spool.wait_idle
    return built


@pytest.fixture(params=[buffered, spooled], ids=["buffered", "spooled"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    factory = request.param

    def build(**options: object) -> Built:
        options.setdefault("writer", CapturingWriter())
        return factory(tmp_path, **options)  # type: ignore[no-any-return]

    return build


def line(i: int) -> bytes:
    return f"m v={i}i {i}".encode()


async def running(built: Built) -> asyncio.Task[None]:
    return asyncio.create_task(built.sink.run())


async def closed(built: Built, task: asyncio.Task[None]) -> None:
    await built.sink.close()
    await asyncio.wait_for(task, 10)


async def test_a_full_batch_is_written_without_waiting_for_the_interval(make: Factory) -> None:
    built = make(batch_size=10)
    task = await running(built)
    for i in range(10):
        await built.sink.put([line(i)])
    await wait_until(lambda: built.writer.lines == [line(i) for i in range(10)], timeout_s=5)
    await closed(built, task)


async def test_a_partial_batch_is_written_when_the_interval_is_up(make: Factory) -> None:
    built = make(batch_size=1000, interval_s=0.05)
    task = await running(built)
    await built.sink.put([line(1), line(2)])
    await wait_until(lambda: built.writer.lines == [line(1), line(2)], timeout_s=5)
    await closed(built, task)


async def test_close_flushes_once_more(make: Factory) -> None:
    built = make(batch_size=1000, interval_s=LONG_S)
    task = await running(built)
    for i in range(7):
        await built.sink.put([line(i)])
    await built.sink.close()
    await asyncio.wait_for(task, 10)
    assert built.writer.lines == [line(i) for i in range(7)]
    assert len(built.writer.batches) == 1  # the shutdown flush, not seven writes


async def test_on_durable_fires_once_per_put_in_put_order(make: Factory) -> None:
    built = make(batch_size=3, interval_s=0.01)
    task = await running(built)
    fired: list[int] = []
    for i in range(20):
        await built.sink.put([line(i), line(i + 100)], lambda i=i: fired.append(i))
    await built.sink.wait_settled()
    assert fired == list(range(20))
    await wait_until(lambda: len(built.writer.lines) == 40)
    await closed(built, task)
    assert fired == list(range(20))  # nothing fires twice at close


async def test_a_put_waits_at_the_bound_while_the_database_is_down_then_everything_lands(make: Factory) -> None:
    writer = CapturingWriter()
    writer.down = True
    built = make(writer=writer, batch_size=10, interval_s=0.01, bound_lines=50)
    task = await running(built)
    put = 0
    blocked: asyncio.Task[None] | None = None
    while blocked is None:
        attempt = asyncio.create_task(built.sink.put([line(put)]))
        done, _ = await asyncio.wait([attempt], timeout=0.2)  # a put that returns does so at once
        put += 1
        if not done:
            blocked = attempt
        else:
            await built.taken()
        assert put <= 500, "no back-pressure: the sink kept taking lines with the database down"
    assert put >= 2  # it took lines up to its bound first
    writer.down = False
    await asyncio.wait_for(blocked, 10)
    await wait_until(lambda: len(writer.lines) == put, timeout_s=10)
    assert writer.lines == [line(i) for i in range(put)]
    await closed(built, task)


async def test_refused_lines_are_handed_over_and_the_rest_lands(make: Factory) -> None:
    writer = CapturingWriter(bad=frozenset({line(3)}))
    built = make(writer=writer, batch_size=8, interval_s=0.01)
    task = await running(built)
    fired: list[int] = []
    for i in range(8):
        await built.sink.put([line(i)], lambda i=i: fired.append(i))
    await wait_until(lambda: len(writer.lines) == 7)
    assert writer.lines == [line(i) for i in range(8) if i != 3]
    assert [refused for refused, _ in built.refused] == [line(3)]
    assert "unable to parse" in built.refused[0][1]
    await built.sink.wait_settled()
    assert fired == list(range(8))  # a refused line is settled too (it is dead-lettered, not retried)
    await closed(built, task)
