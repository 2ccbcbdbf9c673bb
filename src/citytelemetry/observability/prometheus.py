"""Expose ``PipelineStats`` in the Prometheus text format through a custom collector.

A collector reads the one stats object at scrape time, so no counter is kept twice, and each
pipeline gets its own registry (no process-global state for tests to reset).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from citytelemetry.contracts import AlertCounters
from citytelemetry.observability.gcpauses import GcPauses
from citytelemetry.observability.stats import PipelineStats


class PipelineCollector(Collector):
    def __init__(self, stats: PipelineStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s, w = self._stats, self._stats.write
        yield CounterMetricFamily("citytelemetry_messages_received", "MQTT messages received",
                                  value=s.messages_received)
        yield CounterMetricFamily("citytelemetry_messages_settled",
                                  "MQTT messages whose fate is durable (then acknowledged)", value=s.messages_settled)
        for name, doc, counter in (
            ("citytelemetry_readings_accepted", "readings that passed validation", s.readings_accepted),
            ("citytelemetry_readings_landed", "accepted readings made durable (spool, or InfluxDB without one)",
             s.readings_landed),
        ):
            family = CounterMetricFamily(name, doc, labels=["system"])
            for system, value in sorted(counter.items()):
                family.add_metric([system], value)
            yield family
        rejected = CounterMetricFamily("citytelemetry_rejections", "rejections by reason code", labels=["reason"])
        for reason, value in sorted(s.rejections.items()):
            rejected.add_metric([reason], value)
        yield rejected
        yield from _deadletter_metrics(s)
        yield CounterMetricFamily("citytelemetry_points_written", "lines written to InfluxDB",
                                  value=w.lines_written)
        yield CounterMetricFamily("citytelemetry_write_batches", "batches written", value=w.batches_written)
        yield CounterMetricFamily("citytelemetry_write_seconds", "time spent in successful writes",
                                  value=w.write_seconds_total)
        yield CounterMetricFamily("citytelemetry_write_retries", "write attempts retried", value=w.retries)
        yield CounterMetricFamily("citytelemetry_lines_refused", "lines refused by InfluxDB and dead-lettered",
                                  value=w.lines_dead_lettered)
        yield GaugeMetricFamily("citytelemetry_buffered_lines", "lines waiting to be written",
                                value=w.buffered_lines)
        yield GaugeMetricFamily("citytelemetry_last_batch_size", "size of the last batch written",
                                value=w.last_batch_size)
        # Unix time, as Prometheus' own *_timestamp_seconds gauges: `time() - x > 60` pages on a silent writer.
        # The buffer notes a monotonic time (no clock read in wall time per batch); converted here, at scrape.
        last_write = time.time() - (time.monotonic() - w.last_success_monotonic) if w.last_success_monotonic else 0.0
        yield GaugeMetricFamily("citytelemetry_last_write_timestamp_seconds",
                                "Unix time the last batch was acknowledged by InfluxDB (0 before the first)",
                                value=last_write)
        yield GaugeMetricFamily("citytelemetry_in_flight_messages", "messages received and not yet acknowledged",
                                value=s.in_flight_messages)
        yield GaugeMetricFamily("citytelemetry_mqtt_connected", "1 when connected to the broker",
                                value=int(s.mqtt_connected))
        reloads = CounterMetricFamily("citytelemetry_reloads", "reloads of profiles, inventory and alert rules",
                                      labels=["result"])
        reloads.add_metric(["applied"], s.reloads_applied)
        reloads.add_metric(["refused"], s.reloads_refused)
        yield reloads
        yield CounterMetricFamily("citytelemetry_subscriptions_refused",
                                  "topics the broker refused when a reload changed a partitioned member's topics",
                                  value=s.subscriptions_refused)
        yield GaugeMetricFamily("citytelemetry_catalog_devices", "devices in the running inventory",
                                value=s.catalog_devices)
        yield CounterMetricFamily("citytelemetry_mqtt_session_takeovers",
                                  "times another client with our mqtt.client_id took our session",
                                  value=s.mqtt_takeovers)
        completeness = GaugeMetricFamily("citytelemetry_completeness_ratio",
                                         "received / expected readings by device sequence numbers",
                                         labels=["system"])
        for system, (received, expected) in sorted(s.completeness.items()):
            completeness.add_metric([system], received / expected if expected else 1.0)
        yield completeness
        if s.alerts is not None:
            yield from _alert_metrics(s.alerts())
        if s.gc is not None:
            yield from _gc_metrics(s.gc)
        if s.spool is not None:
            yield GaugeMetricFamily("citytelemetry_spool_depth_records", "spooled records not yet in InfluxDB",
                                    value=s.spool.depth_records)
            yield GaugeMetricFamily("citytelemetry_spool_bytes", "bytes of spool segments on disk",
                                    value=s.spool.bytes_on_disk)
            yield GaugeMetricFamily("citytelemetry_spool_oldest_age_seconds", "age of the oldest undrained record",
                                    value=s.spool.oldest_age_s)
            yield CounterMetricFamily("citytelemetry_spool_write_failures", "failed spool writes (nothing acked)",
                                      value=s.spool.write_failures)
            yield CounterMetricFamily("citytelemetry_spool_records_lost",
                                      "acknowledged records found missing from the spool at start (logged with "
                                      "devices and seq ranges)", value=s.spool.records_lost)


_SUPPRESSED_DOC = ("refused messages over their device's dead-letter budget (counted, not written), by their "
                   "most frequent reason")


def _deadletter_metrics(s: PipelineStats) -> Iterator[Metric]:
    for name, doc, label, counter in (
        ("citytelemetry_deadletters_suppressed", _SUPPRESSED_DOC, "reason", s.deadletters_suppressed),
        ("citytelemetry_records_refused", "lines InfluxDB refused although we built them, by record kind",
         "kind", s.records_refused),
    ):
        family = CounterMetricFamily(name, doc, labels=[label])
        for key, value in sorted(counter.items()):
            family.add_metric([key], value)
        yield family
    if s.deadletter_store is not None:
        store = s.deadletter_store
        yield CounterMetricFamily("citytelemetry_deadletter_store_entries", "entries written to the dead-letter store",
                                  value=store.entries_written)
        yield CounterMetricFamily("citytelemetry_deadletter_store_write_failures",
                                  "failed dead-letter store writes (the ct_rejects point is still written)",
                                  value=store.write_failures)
        yield GaugeMetricFamily("citytelemetry_deadletter_store_bytes", "bytes of dead-letter store segments",
                                value=store.bytes_on_disk)


def _alert_metrics(a: AlertCounters) -> Iterator[Metric]:
    yield CounterMetricFamily("citytelemetry_alert_readings", "readings seen by the alert rules", value=a.readings)
    yield CounterMetricFamily("citytelemetry_alert_rule_errors", "alert rule failures (ingestion went on)",
                              value=a.rule_errors)
    yield CounterMetricFamily("citytelemetry_alert_transitions", "alert firings and resolutions", value=a.transitions)
    yield GaugeMetricFamily("citytelemetry_alerts_firing", "alerts firing now", value=a.firing)
    yield CounterMetricFamily("citytelemetry_alert_deliveries", "alert events and re-sends accepted by Alertmanager",
                              value=a.delivered)
    yield CounterMetricFamily("citytelemetry_alert_delivery_failures", "failed Alertmanager deliveries (retried)",
                              value=a.delivery_failures)
    yield CounterMetricFamily("citytelemetry_alert_events_dropped", "alert events lost to a full delivery queue",
                              value=a.dropped)
    yield GaugeMetricFamily("citytelemetry_alert_events_queued", "alert events waiting for Alertmanager",
                            value=a.queued)


def _gc_metrics(pauses: GcPauses) -> Iterator[Metric]:
    for name, doc, family_type, values in (
        ("citytelemetry_gc_collections", "garbage collections by generation (2 = full)", CounterMetricFamily,
         pauses.collections),
        ("citytelemetry_gc_pause_seconds", "time the process stood still in garbage collections", CounterMetricFamily,
         pauses.seconds),
        ("citytelemetry_gc_longest_pause_seconds", "longest garbage-collection pause since start", GaugeMetricFamily,
         pauses.longest_s),
    ):
        family = family_type(name, doc, labels=["generation"])
        for generation, value in enumerate(values):
            family.add_metric([str(generation)], value)
        yield family


def registry_for(stats: PipelineStats) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(stats))
    return registry
