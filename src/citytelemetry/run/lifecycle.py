"""The running pipeline: start, pump, reconnect, stop. Built by ``run.build``, which owns the wiring.

Lifecycle: ``run()`` connects (reconnecting with capped, jittered backoff) until ``stop()``; then it
stops consuming, flushes everything received, lets the acknowledgements go out on the still-open
session, disconnects, and closes the writer, all within ``pipeline.shutdown_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass

from citytelemetry.config import Settings
from citytelemetry.contracts import AlertEvaluator, InboundMessage, LineWriter, OnDurable, Sink
from citytelemetry.deadletters.store import DeadLetterStore
from citytelemetry.ingest.broker import BrokerError, BrokerSource
from citytelemetry.ingest.factory import open_source
from citytelemetry.ingest.member_topics import MemberTopics
from citytelemetry.ingest.watch import ConnectionWatch
from citytelemetry.observability.completeness import CompletenessTracker
from citytelemetry.observability.http import start_http
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.profiles import Catalog
from citytelemetry.run.checkpoint import Checkpointer
from citytelemetry.run.handler import MessageHandler
from citytelemetry.run.notices import DeadLetterNotices
from citytelemetry.run.reload import Reloader, ReloadReport
from citytelemetry.run.reporting import SelfMetricsReporter
from citytelemetry.sink.backoff import Backoff
from citytelemetry.sink.spool import Spool
from citytelemetry.storage.task import RollupTask

log = logging.getLogger("citytelemetry.pipeline")
PUMP_SLICE_S = 0.005  # the longest the consumer holds the event loop while messages are queued
TAKE_AT_ONCE = 256  # messages the pump takes from the source at a time (at most one receive window)


@dataclass(slots=True, frozen=True)
class PipelineParts:
    """What ``run.build`` wires together; the pipeline only runs them."""

    catalog: Catalog
    stats: PipelineStats
    handler: MessageHandler
    sink: Sink
    writer: LineWriter
    spool: Spool | None
    deadletter_store: DeadLetterStore | None
    completeness: CompletenessTracker
    notices: DeadLetterNotices
    reporter: SelfMetricsReporter
    evaluator: AlertEvaluator | None
    reloader: Reloader | None = None
    rollups: RollupTask | None = None  # storage: keeps the rollup tiers up to date (docs/storage.md)
    checkpointer: Checkpointer | None = None
    topics: MemberTopics | None = None  # a partitioned member's topics (reloads change them); None: the wildcards


class Pipeline:
    def __init__(self, settings: Settings, parts: PipelineParts) -> None:
        self.settings = settings
        self._parts = parts  # what run.build wired; the pipeline runs them and never replaces one
        self._reloads: set[asyncio.Task[ReloadReport]] = set()
        self._catching_up: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    # The parts that tests, benches and the CLI read; read-only, as the pipeline never replaces a part.
    @property
    def stats(self) -> PipelineStats:
        return self._parts.stats

    @property
    def handler(self) -> MessageHandler:
        return self._parts.handler

    @property
    def sink(self) -> Sink:
        return self._parts.sink

    @property
    def spool(self) -> Spool | None:
        return self._parts.spool

    @property
    def deadletter_store(self) -> DeadLetterStore | None:
        return self._parts.deadletter_store

    @property
    def completeness(self) -> CompletenessTracker:
        return self._parts.completeness

    @property
    def evaluator(self) -> AlertEvaluator | None:
        return self._parts.evaluator

    @property
    def rollups(self) -> RollupTask | None:
        return self._parts.rollups

    @property
    def checkpointer(self) -> Checkpointer | None:
        return self._parts.checkpointer

    def stop(self) -> None:
        self._stop.set()

    @property
    def catalog(self) -> Catalog:
        """The catalog running now (a reload replaces it)."""
        return self._parts.reloader.catalog if self._parts.reloader is not None else self._parts.catalog

    # -- reload (run/reload.py) ------------------------------------------------------------------
    async def reload(self) -> ReloadReport:
        """Profiles, inventory and alert rules anew, all or nothing (SIGHUP, POST /-/reload)."""
        if self._parts.reloader is None:
            return ReloadReport(applied=False, problems=("this pipeline was built without a reloader",))
        return await self._parts.reloader.reload()

    def request_reload(self) -> None:
        """The SIGHUP handler: reload in a task of its own; the report goes to the log."""
        task = asyncio.create_task(self.reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_for_http(self) -> tuple[bool, dict[str, object]]:
        report = await self.reload()
        return report.applied, report.as_json() | {"lines": report.lines()}

    async def run(self) -> None:
        self._open_stores()
        if self.checkpointer is not None:
            self.checkpointer.restore()
            self.handler.journal = self.checkpointer.journal
        runner = None
        if self.settings.http.port:
            routes = [self.evaluator.add_routes] if self.evaluator is not None else []
            runner = await start_http(self.stats, self.settings.http.host, self.settings.http.port,
                                      reload=self._reload_for_http if self._parts.reloader is not None else None,
                                      routes=routes)
        flush = asyncio.create_task(self.sink.run(), name="sink-flush")
        helpers = self._start_helpers()
        try:
            await self._prepare_store()
            await self._consume()
        finally:
            log.info("stopping: %d records not yet in InfluxDB", self.sink.pending)
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self.evaluator is not None:
                await self.evaluator.aclose()
            self._parts.reporter.final()
            await self._final_flush(flush)
            if self.checkpointer is not None:  # after the final flush: what is acknowledged now
                await self.checkpointer.save()
                self.checkpointer.close()
            await self._close_stores()
            if runner is not None:
                await runner.cleanup()
            log.info("stopped: %d messages received, %d settled, %d points written",
                     self.stats.messages_received, self.stats.messages_settled, self.stats.write.lines_written)

    def _open_stores(self) -> None:
        """Local state first: a directory we cannot use fails the start, naming it, before anything is consumed."""
        if self.spool is not None:
            self.spool.open()  # raises SpoolError
        if self.deadletter_store is not None:
            self.deadletter_store.open()  # raises DeadLetterStoreError
        if self.rollups is not None:
            self.rollups.open(self.settings.storage.recompute_windows)

    def _start_helpers(self) -> list[asyncio.Task[None]]:
        helpers = [asyncio.create_task(self._parts.reporter.run(), name="self-metrics"),
                   asyncio.create_task(self._parts.notices.run(), name="deadletter-notices")]
        if self.evaluator is not None:
            helpers.append(asyncio.create_task(self.evaluator.run(), name="alert-evaluator"))
        if self._parts.reloader is not None and self.settings.pipeline.reload_watch_s > 0:
            helpers.append(asyncio.create_task(self._parts.reloader.watch(self.settings.pipeline.reload_watch_s),
                                               name="reload-watch"))
        if self.rollups is not None:
            helpers.append(asyncio.create_task(self.rollups.run(), name="rollups"))
        if self.checkpointer is not None:
            helpers.append(asyncio.create_task(self.checkpointer.run(), name="device-state-checkpoint"))
        return helpers

    async def _close_stores(self) -> None:
        """After the final flush: the rollups keep their marks for the next start."""
        if self.rollups is not None:
            await self.rollups.aclose()
        await self._parts.writer.aclose()
        if self.deadletter_store is not None:
            self.deadletter_store.close()

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

    async def _prepare_store(self) -> None:
        try:
            await self._parts.writer.prepare()
        except Exception as exc:  # noqa: BLE001 - writes retry (and create the database) later; say so now
            log.warning("could not prepare InfluxDB database %r yet: %s", self.settings.influx.database, exc)

    async def _consume(self) -> None:
        backoff = Backoff(base_s=0.5, cap_s=10.0)
        watch = ConnectionWatch(self.settings.mqtt.client_id)  # raises BrokerGaveUpError: the process stops
        attempt = 0
        while not self._stop.is_set():
            try:
                topics = self._parts.topics
                wanted = topics.filters if topics else None
                async with open_source(self.settings.mqtt, topic_filters=wanted,
                                       unsubscribe=topics.unsubscribe if topics else None,
                                       on_refused=self._refused_at_connect) as source:
                    self._attach(source)
                    if topics is not None and wanted is not None:
                        self._follow_topics(topics, source, wanted)
                    watch.connected()
                    attempt = 0
                    await self._pump_until_stopped(source)
                    await self._drain_before_disconnect()
            except BrokerError as exc:
                takeover = watch.ended(exc)
                self.stats.mqtt_takeovers = watch.takeovers
                if takeover is not None:
                    log.error("MQTT session taken over: %s", takeover)  # noqa: TRY400 - the report says all
                delay = backoff.delay(attempt)
                attempt += 1
                log.warning("MQTT connection to %s lost or refused (%s); reconnecting in %.1f s",
                            self.settings.mqtt.host, exc, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
            finally:
                self._attach(None)

    def _refused_at_connect(self, refused: list[tuple[str, str]]) -> None:
        self.stats.subscriptions_refused += len(refused)  # the source has logged each
        if self._parts.topics is not None:
            self._parts.topics.refused_at_connect(topic for topic, _ in refused)

    def _follow_topics(self, topics: MemberTopics, source: BrokerSource, subscribed: list[str]) -> None:
        """A reload that applied while this connection was being opened changed the set it subscribed to:
        catch up beside the pump (whose reading lets the SUBACK in)."""
        topics.attach(source, subscribed)
        if topics.behind:
            task = asyncio.create_task(self._catch_up(topics), name="mqtt-topics")
            self._catching_up.add(task)
            task.add_done_callback(self._catching_up.discard)

    async def _catch_up(self, topics: MemberTopics) -> None:
        outcome = await topics.follow()
        self.stats.subscriptions_refused += len(outcome.refused)
        log.log(logging.WARNING if outcome.refused or outcome.error else logging.INFO, "reload, after connecting: %s",
                "\n".join(outcome.lines()))

    def _attach(self, source: BrokerSource | None) -> None:
        if source is None and self._parts.topics is not None:
            self._parts.topics.detach()
        self.handler.source = self._parts.notices.source = source
        if source is not None and self.checkpointer is not None:
            source.before_write = self.checkpointer.journal.flush
        self.stats.mqtt_connected = source is not None
        if source is not None:
            self.stats.mqtt_connects += 1

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
                await self._parts.notices.join()  # the live dead-letter feed goes out before we disconnect
        except TimeoutError:
            log.error(  # noqa: TRY400 - a timeout's traceback says nothing
                "shutdown: InfluxDB did not take %d lines in time; unacknowledged messages stay with the broker",
                self.sink.pending)

    async def _pump(self, source: BrokerSource) -> None:
        # The source hands over queued messages without suspending, and a full receive window of W2
        # batches is ~150 ms of work. Yielding every few ms lets a finished InfluxDB write be read and the
        # next one sent meanwhile, so writing overlaps validating instead of alternating with it.
        # Messages go through in batches (handler.hand_over, compiled): per message, the async generator
        # step, this loop's bytecode and the sink's interpreted calls cost ~8k instructions of a W1
        # message, a fifth of what it took outside the handler (callgrind, in process).
        parts, stats, monotonic = self._parts, self.stats, time.monotonic
        handler, sink = parts.handler, parts.sink
        next_yield = monotonic() + PUMP_SLICE_S
        while True:
            messages = source.take_ready(TAKE_AT_ONCE)
            if not messages:
                await source.wait_ready()
                next_yield = monotonic() + PUMP_SLICE_S
                continue
            done = 0
            while done < len(messages):
                if sink.full():  # wait for room with this message: the broker holds the backlog meanwhile
                    await self.handle(messages[done])
                    done += 1
                    source.check()  # what was taken is dropped if the connection was lost meanwhile
                else:
                    done = handler.hand_over(messages, done, sink, next_yield)
                    if parts.rollups is not None:
                        parts.rollups.windows.commit()  # the sink has these lines: their windows may be computed
                stats.in_flight_messages = source.in_flight
                if monotonic() >= next_yield:
                    await asyncio.sleep(0)
                    next_yield = monotonic() + PUMP_SLICE_S
                    source.check()

    async def handle(self, message: InboundMessage) -> None:
        waiting = self.handle_nowait(message)
        if waiting is not None:
            await waiting

    def handle_nowait(self, message: InboundMessage) -> Coroutine[None, None, None] | None:
        """Hand one message's lines to the sink; returns what to await only when the sink is full (the
        pump then waits, so the broker holds the backlog). A coroutine per message cost ~2 us (W1)."""
        parts = self._parts  # per message: plain slot reads, not the properties
        lines, on_durable = parts.handler(message)
        sink = parts.sink
        if sink.full():
            return self._put_when_room(lines, on_durable)
        sink.put_nowait(lines, on_durable)
        if parts.rollups is not None:
            parts.rollups.windows.commit()  # the sink has these lines: their windows may be computed
        return None

    async def _put_when_room(self, lines: Sequence[bytes], on_durable: OnDurable) -> None:
        parts = self._parts
        await parts.sink.put(lines, on_durable)
        if parts.rollups is not None:
            parts.rollups.windows.commit()
