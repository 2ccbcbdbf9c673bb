"""The composition root: a ``Pipeline`` built from settings and the catalog. No I/O happens here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from citytelemetry.config import Settings
from citytelemetry.contracts import AlertEvaluator, EmitLines, LineWriter, Sink
from citytelemetry.deadletters import DeadLetterBudget
from citytelemetry.deadletters.outlet import DeadLetterOutlet
from citytelemetry.deadletters.store import DeadLetterStore
from citytelemetry.ingest.member_topics import MemberTopics
from citytelemetry.observability.completeness import CompletenessTracker
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.profiles import Catalog
from citytelemetry.run.checkpoint import Checkpointer
from citytelemetry.run.handler import MessageHandler
from citytelemetry.run.lag import ConsumerLag
from citytelemetry.run.lifecycle import Pipeline, PipelineParts
from citytelemetry.run.notices import DeadLetterNotices
from citytelemetry.run.refused import RefusedLines
from citytelemetry.run.reload import Reloader, ReloadParts
from citytelemetry.run.reporting import SelfMetricsReporter
from citytelemetry.sink.buffer import BufferedSink
from citytelemetry.sink.deadletter import DeadLetterFormatter
from citytelemetry.sink.factory import make_writer
from citytelemetry.sink.spool import Spool, SpooledSink
from citytelemetry.validate import Limits, MessageValidator
from citytelemetry.validate.ratelimit import DeviceRateLimit

if TYPE_CHECKING:
    from citytelemetry.alerts.evaluator import AlertEngine

EvaluatorFactory = Callable[[EmitLines], AlertEvaluator]


def build_pipeline(settings: Settings, catalog: Catalog, *, writer: LineWriter | None = None,
                   evaluator_factory: EvaluatorFactory | None = None,
                   reread_settings: Callable[[], Settings] | None = None) -> Pipeline:
    """The pipeline with the given parts replaced (tests and benches inject a writer or an evaluator).
    ``reread_settings`` loads the configuration again, for a reload to name what changed since the start."""
    p = settings.pipeline
    stats = PipelineStats()
    instance = settings.mqtt.client_id
    limits = Limits(max_payload_bytes=p.max_payload_bytes, max_readings_per_message=p.max_readings_per_message,
                    max_future_s=p.max_future_s, max_age_s=p.max_age_s)
    rate_limit = DeviceRateLimit.from_catalog(catalog)

    def make_validator(for_catalog: Catalog) -> MessageValidator:  # at start, and again at each reload
        return MessageValidator(for_catalog, limits, topic_prefix=settings.mqtt.topic_prefix, rate_limit=rate_limit,
                                sequence_window=p.sequence_window)

    validator = make_validator(catalog)
    writer = writer or make_writer(settings.influx)
    completeness = CompletenessTracker(catalog, instance=instance)
    notices = DeadLetterNotices(stats, settings.mqtt.topic_prefix)
    # The handler needs the evaluator, the evaluator the sink, the sink the refused-line handler, and that
    # one the handler: the refused-line handler is bound to the sink last.
    store = None
    if p.deadletter_dir is not None:
        store = DeadLetterStore(p.deadletter_dir, max_bytes=p.deadletter_max_bytes, max_age_s=p.deadletter_max_age_s)
        stats.deadletter_store = store.stats
    outlet = DeadLetterOutlet(
        DeadLetterFormatter(catalog, instance), DeadLetterBudget(rate_per_s=p.deadletter_rate_per_s,
                                                                 burst=p.deadletter_burst),
        store=store, charge=rate_limit.charge, suppressed=stats.deadletters_suppressed,
        publish_notice=notices.queue if settings.mqtt.publish_deadletters else None)
    handler = MessageHandler(catalog, validator, stats, completeness, outlet)
    refused = RefusedLines(handler, stats, store)
    buffer = BufferedSink(writer, on_refused=refused, batch_size=p.batch_size, flush_interval_s=p.flush_interval_s,
                          max_buffered_lines=p.max_buffered_lines, write_concurrency=p.write_concurrency,
                          stats=stats.write)
    spool: Spool | None = None
    sink: Sink = buffer
    if p.spool_dir is not None:
        spool = Spool(p.spool_dir, max_bytes=p.spool_max_bytes)
        stats.spool = spool.stats
        stats.spool_full = spool.full
        sink = SpooledSink(spool, buffer, memory_lines=p.spool_memory_lines)
    refused.sink = sink
    evaluator = evaluator_factory(sink.put_nowait) if evaluator_factory else None
    if evaluator is not None:
        stats.alerts = evaluator.counters
        handler.evaluator = evaluator
        evaluator.follow(ConsumerLag(handler, settings.mqtt.receive_maximum))
    rollups = None
    if settings.storage.rollups:
        from citytelemetry.storage.build import build_rollup_task

        rollups = build_rollup_task(settings, catalog, sink)
        handler.rollup_windows = rollups.windows.observe
    reporter = SelfMetricsReporter(stats, completeness, validator.sequences, sink, instance=instance,
                                   interval_s=p.selfmetrics_interval_s)
    checkpointer = None if p.checkpoint_file is None else Checkpointer(
        p.checkpoint_file, p.checkpoint_interval_s, known=catalog.devices.keys(), sequences=validator.sequences,
        completeness=completeness, rate=rate_limit, pending=handler.pending)
    topics = None if p.partition is None else MemberTopics(p.partition, settings.mqtt.topic_prefix,
                                                           catalog.devices.values(), partition_by=p.partition_by)
    reloader = Reloader(settings, ReloadParts(
        catalog=catalog, handler=handler, validator=validator, rate_limit=rate_limit, completeness=completeness,
        make_validator=make_validator, evaluator=_reloadable(evaluator), topics=topics), stats,
        reread_settings=reread_settings)
    return Pipeline(settings, PipelineParts(
        catalog=catalog, stats=stats, handler=handler, sink=sink, writer=writer, spool=spool,
        deadletter_store=store,
        completeness=completeness, notices=notices, reporter=reporter, evaluator=evaluator, reloader=reloader,
        rollups=rollups, checkpointer=checkpointer, topics=topics))


def _reloadable(evaluator: AlertEvaluator | None) -> AlertEngine | None:
    """The alert engine's rules reload with the rest; an evaluator a test injects keeps its own."""
    if evaluator is None:
        return None
    from citytelemetry.alerts.evaluator import AlertEngine

    return evaluator if isinstance(evaluator, AlertEngine) else None


def make_pipeline(settings: Settings, catalog: Catalog, *,
                  reread_settings: Callable[[], Settings] | None = None) -> Pipeline:
    """The pipeline as configured: with the alert evaluator when ``alerts.enabled``."""
    if not settings.alerts.enabled:
        return build_pipeline(settings, catalog, reread_settings=reread_settings)
    from citytelemetry.alerts import build_evaluator

    return build_pipeline(settings, catalog, reread_settings=reread_settings,
                          evaluator_factory=lambda emit: build_evaluator(settings, catalog, emit))
