"""A bug on one message must not become a poison pill: the message is dead-lettered, the next one lands."""

from __future__ import annotations

import asyncio
import time

import orjson

from citytelemetry.config import HttpSettings, PipelineSettings, Settings
from citytelemetry.contracts import InboundMessage
from citytelemetry.run import build_pipeline
from citytelemetry.testing import CapturingWriter, CountingDelivery

from .catalog_fixture import make_catalog

TOPIC = "ct/v1/hunnan/tunnel/tun-c001-gas1/telemetry"


async def test_a_validator_crash_is_dead_lettered_and_the_stream_goes_on() -> None:
    settings = Settings(http=HttpSettings(port=0), pipeline=PipelineSettings(spool_dir=None))
    writer = CapturingWriter()
    pipeline = build_pipeline(settings, make_catalog(), writer=writer)
    real = pipeline.handler.validator
    calls = {"n": 0}

    def flaky(message: InboundMessage):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise TypeError("unhashable type: 'list'")
        return real(message)

    pipeline.handler.validator = flaky
    delivery = CountingDelivery()
    now = time.time_ns() // 1_000_000
    body = orjson.dumps({"device": "tun-c001-gas1", "seq": 1, "ts": now, "values": {"o2": 20.9}})
    run = asyncio.create_task(pipeline.sink.run())
    await pipeline.handle(InboundMessage(TOPIC, b'{"state": []}', now, delivery))
    await pipeline.handle(InboundMessage(TOPIC, body, now, delivery))
    await pipeline.sink.wait_settled()
    await pipeline.sink.close()
    await run
    assert delivery.settled == 2
    assert dict(pipeline.stats.rejections) == {"processing_error": 1}
    assert [line.split(b",")[0] for line in writer.lines] == [b"ct_rejects", b"tunnel_multigas"]
    assert b'detail="TypeError: unhashable type: \'list\'"' in writer.lines[0]
