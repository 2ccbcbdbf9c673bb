"""The live dead-letter feed: rejection notices published on ``<prefix>/deadletter/<reason>``.

Best effort by design: the durable record of a rejection is its ``ct_rejects`` point, which goes
through the sink like any reading. Notices wait in a bounded queue for the connected source; one
that cannot be queued or published is counted, never retried forever.
"""

from __future__ import annotations

import asyncio

from citytelemetry.ingest.broker import BrokerError, BrokerSource
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.topics import deadletter_topic

NOTICE_QUEUE = 10_000  # live dead-letter notices waiting for the broker


class DeadLetterNotices:
    def __init__(self, stats: PipelineStats, topic_prefix: str) -> None:
        self.source: BrokerSource | None = None  # the connected source; None between connections
        self._stats = stats
        self._prefix = topic_prefix
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=NOTICE_QUEUE)

    def queue(self, reason: str, notice: bytes) -> None:
        """``PublishNotice`` for the message handler: never waits."""
        try:
            self._queue.put_nowait((deadletter_topic(reason, self._prefix), notice))
        except asyncio.QueueFull:
            self._stats.deadletter_publish_failures += 1

    async def join(self) -> None:
        """Until every queued notice has been published or counted as failed."""
        await self._queue.join()

    async def run(self) -> None:
        while True:
            topic, payload = await self._queue.get()
            try:
                await self._publish(topic, payload)
            finally:
                self._queue.task_done()

    async def _publish(self, topic: str, payload: bytes) -> None:
        source = self.source
        if source is None:
            self._stats.deadletter_publish_failures += 1
            return
        try:
            await source.publish(topic, payload, qos=1)
            self._stats.deadletters_published += 1
        except BrokerError:
            self._stats.deadletter_publish_failures += 1
