"""``citytelemetry run``: MQTT source -> validator -> buffered InfluxDB sink, acknowledging when durable.

Lifecycle: ``run()`` connects (reconnecting with capped, jittered backoff) until ``stop()``; then it
stops consuming, flushes everything received, lets the acknowledgements go out on the still-open
session, disconnects, and closes the writer, all within ``pipeline.shutdown_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from citytelemetry.config import Settings
from citytelemetry.contracts import AlertEvaluator, EmitLines, InboundMessage, LineWriter
from citytelemetry.handling import MessageHandler
from citytelemetry.ingest.broker import BrokerError, BrokerSource
from citytelemetry.ingest.factory import open_source
from citytelemetry.ingest.topics import deadletter_topic
from citytelemetry.observability.completeness import CompletenessTracker
from citytelemetry.observability.http import start_http
from citytelemetry.observability.selfmetrics import selfmetrics_lines
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.profiles import Catalog
from citytelemetry.records import Reason, Rejection
from citytelemetry.sink.backoff import Backoff
from citytelemetry.sink.buffer import BufferedSink
from citytelemetry.sink.deadletter import DeadLetterFormatter
from citytelemetry.sink.factory import make_writer
from citytelemetry.sink.influx_v1 import InfluxV1Writer
from citytelemetry.sink.spool import Spool, SpooledSink
from citytelemetry.validate import Limits, MessageValidator
from citytelemetry.validate.ratelimit import DeviceRateLimit

log = logging.getLogger(__name__)
PUMP_SLICE_S = 0.005  # the longest the consumer holds the event loop while messages are queued
NOTICE_QUEUE = 10_000  # live dead-letter notices waiting for the broker; the durable record is in InfluxDB


class Pipeline:
    def __init__(self, settings: Settings, catalog: Catalog, *, writer: LineWriter | None = None,
                 evaluator_factory: Callable[[EmitLines], AlertEvaluator] | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.stats = PipelineStats()
        p = settings.pipeline
        validator = MessageValidator(
            catalog, Limits(max_payload_bytes=p.max_payload_bytes, max_readings_per_message=p.max_readings_per_message,
                            max_future_s=p.max_future_s, max_age_s=p.max_age_s),
            topic_prefix=settings.mqtt.topic_prefix, rate_limit=DeviceRateLimit.from_catalog(catalog))
        self._sequences = validator.sequences
        self._instance = settings.mqtt.client_id
        self._writer = writer or make_writer(settings.influx)
        buffer = BufferedSink(self._writer, on_refused=self._on_refused, batch_size=p.batch_size,
                              flush_interval_s=p.flush_interval_s, max_buffered_lines=p.max_buffered_lines,
                              write_concurrency=p.write_concurrency,
                              stats=self.stats.write)
        self.spool: Spool | None = None
        self.sink: BufferedSink | SpooledSink = buffer
        if p.spool_dir is not None:
            self.spool = Spool(p.spool_dir, max_bytes=p.spool_max_bytes)
            self.stats.spool = self.spool.stats
            self.sink = SpooledSink(self.spool, buffer, memory_lines=p.spool_memory_lines)
        self._notices: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=NOTICE_QUEUE)
        self._stop = asyncio.Event()
        self.completeness = CompletenessTracker(catalog)
        self.evaluator = evaluator_factory(self.sink.put_nowait) if evaluator_factory else None
        if self.evaluator is not None:
            self.stats.alerts = self.evaluator.counters
        self.handler = MessageHandler(
            catalog, validator, self.stats, self.completeness, DeadLetterFormatter(catalog, self._instance),
            evaluator=self.evaluator, publish_notice=self._queue_notice if settings.mqtt.publish_deadletters else None)

    def stop(self) -> None:
        self._stop.set()

    # -- lifecycle -------------------------------------------------------------------------------
    async def run(self) -> None:
        if self.spool is not None:
            self.spool.open()  # raises SpoolError, naming the directory, before anything is consumed
        runner = None
        if self.settings.http.port:
            runner = await start_http(self.stats, self.settings.http.host, self.settings.http.port)
        flush = asyncio.create_task(self.sink.run(), name="sink-flush")
        helpers = [asyncio.create_task(self._selfmetrics_loop(), name="self-metrics"),
                   asyncio.create_task(self._publish_notices(), name="deadletter-notices")]
        if self.evaluator is not None:
            helpers.append(asyncio.create_task(self.evaluator.run(), name="alert-evaluator"))
        try:
            await self._prepare_database()
            await self._consume()
        finally:
            log.info("stopping: %d records not yet in InfluxDB", self.sink.pending)
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self.evaluator is not None:
                await self.evaluator.aclose()
            self.sink.put_nowait(selfmetrics_lines(self.stats, self._instance, time.time_ns()))
            await self._final_flush(flush)
            await self._writer.aclose()
            if runner is not None:
                await runner.cleanup()
            log.info("stopped: %d messages received, %d settled, %d points written",
                     self.stats.messages_received, self.stats.messages_settled, self.stats.write.lines_written)

    async def _final_flush(self, flush: asyncio.Task[None]) -> None:
        """Give InfluxDB ``shutdown_timeout_s`` to take what is left; with a spool nothing is lost either way."""
        await self.sink.close()
        try:
            async with asyncio.timeout(self.settings.pipeline.shutdown_timeout_s):
                await flush
        except TimeoutError:
            log.error(  # noqa: TRY400 - a timeout's traceback says nothing
                "shutdown: InfluxDB did not take everything in time; %s", "the rest stays in the spool for "
                "the next start" if self.spool else "unwritten messages stay unacknowledged at the broker")
            flush.cancel()
            await asyncio.gather(flush, return_exceptions=True)

    async def _prepare_database(self) -> None:
        if isinstance(self._writer, InfluxV1Writer) and self.settings.influx.create_database:
            try:
                await self._writer.create_database()
            except Exception as exc:  # noqa: BLE001 - writes retry and create it later; say so now
                log.warning("could not create database %r yet: %s", self.settings.influx.database, exc)

    async def _consume(self) -> None:
        backoff = Backoff(base_s=0.5, cap_s=10.0)
        attempt = 0
        while not self._stop.is_set():
            try:
                async with open_source(self.settings.mqtt) as source:
                    self.handler.source = source
                    self.stats.mqtt_connected = True
                    self.stats.mqtt_connects += 1
                    attempt = 0
                    await self._pump_until_stopped(source)
                    await self._drain_before_disconnect()
            except BrokerError as exc:
                delay = backoff.delay(attempt)
                attempt += 1
                log.warning("MQTT connection to %s lost or refused (%s); reconnecting in %.1f s",
                            self.settings.mqtt.host, exc, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
            finally:
                self.handler.source = None
                self.stats.mqtt_connected = False

    async def _pump_until_stopped(self, source: BrokerSource) -> None:
        pump = asyncio.create_task(self._pump(source), name="mqtt-pump")
        stopped = asyncio.create_task(self._stop.wait(), name="stop-wait")
        try:
            await asyncio.wait({pump, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, stopped):
                task.cancel()
            results = await asyncio.gather(pump, stopped, return_exceptions=True)
        if isinstance(results[0], Exception):
            raise results[0]  # BrokerError: reconnect; anything else is a bug: stop loudly, do not loop

    async def _drain_before_disconnect(self) -> None:
        """Write what was received so its acknowledgements go out on this session."""
        try:
            async with asyncio.timeout(self.settings.pipeline.shutdown_timeout_s):
                await self.sink.wait_settled()
                await self._notices.join()  # the live dead-letter feed goes out before we disconnect
        except TimeoutError:
            log.error(  # noqa: TRY400 - a timeout's traceback says nothing
                "shutdown: InfluxDB did not take %d lines in time; unacknowledged messages stay with the broker",
                self.sink.pending)

    # -- per message -----------------------------------------------------------------------------
    async def _pump(self, source: BrokerSource) -> None:
        # The source hands over queued messages without suspending, and a full receive window of W2
        # batches is ~150 ms of work. Yielding every few ms lets a finished InfluxDB write be read and the
        # next one sent meanwhile, so writing overlaps validating instead of alternating with it.
        handle, stats, monotonic, next_yield = self.handle, self.stats, time.monotonic, 0.0
        async for message in source.messages():
            await handle(message)
            stats.in_flight_messages = source.in_flight
            now = monotonic()
            if now >= next_yield:
                await asyncio.sleep(0)
                next_yield = now + PUMP_SLICE_S

    async def handle(self, message: InboundMessage) -> None:
        lines, on_durable = self.handler(message)
        await self.sink.put(lines, on_durable)

    def _queue_notice(self, reason: str, notice: bytes) -> None:
        try:
            self._notices.put_nowait((deadletter_topic(reason, self.settings.mqtt.topic_prefix), notice))
        except asyncio.QueueFull:
            self.stats.deadletter_publish_failures += 1

    def _on_refused(self, line: bytes, server_message: str) -> None:
        """InfluxDB refused a line we built: dead-letter it (once; a refused dead letter is only logged)."""
        if line.startswith(b"ct_rejects,"):
            log.error("InfluxDB refused a dead-letter record (%s): %r", server_message, line[:300])
            return
        rejection = Rejection(reason=Reason.WRITE_REJECTED, detail=server_message[:512], topic="",
                              excerpt=line[:256].decode(errors="replace"))
        now_ms = time.time_ns() // 1_000_000
        self.sink.put_nowait([self.handler.dead_letter(rejection, now_ms)])
        self.handler.count_rejection(rejection, now_ms)

    # -- background ------------------------------------------------------------------------------
    async def _selfmetrics_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.pipeline.selfmetrics_interval_s)
            self.stats.sequence_restarts = self._sequences.restarts
            now_ns = time.time_ns()
            self.stats.completeness = self.completeness.by_system()
            self.sink.put_nowait(selfmetrics_lines(self.stats, self._instance, now_ns))
            self.sink.put_nowait(self.completeness.lines(now_ns))

    async def _publish_notices(self) -> None:
        while True:
            topic, payload = await self._notices.get()
            try:
                await self._publish_notice(topic, payload)
            finally:
                self._notices.task_done()

    async def _publish_notice(self, topic: str, payload: bytes) -> None:
        source = self.handler.source
        if source is None:
            self.stats.deadletter_publish_failures += 1
            return
        try:
            await source.publish(topic, payload, qos=1)
            self.stats.deadletters_published += 1
        except BrokerError:
            self.stats.deadletter_publish_failures += 1


def make_pipeline(settings: Settings, catalog: Catalog) -> Pipeline:
    """The pipeline as configured: with the alert evaluator when ``alerts.enabled``."""
    if not settings.alerts.enabled:
        return Pipeline(settings, catalog)
    from citytelemetry.alerts import build_evaluator

    return Pipeline(settings, catalog, evaluator_factory=lambda emit: build_evaluator(settings, catalog, emit))
