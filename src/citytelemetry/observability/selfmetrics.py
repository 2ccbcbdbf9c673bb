"""Self-metrics as InfluxDB points (measurement ``ct_pipeline``), so Grafana shows pipeline health
beside the data. Cumulative counters: graph them with ``non_negative_derivative``."""

from __future__ import annotations

from citytelemetry.measurements import PIPELINE, PIPELINE_REJECTS
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.records import FieldValue
from citytelemetry.sink.line_protocol import format_line


def selfmetrics_lines(stats: PipelineStats, instance: str, timestamp_ns: int) -> list[bytes]:
    w = stats.write
    fields: dict[str, FieldValue] = {
        "messages_received": stats.messages_received,
        "messages_settled": stats.messages_settled,
        "readings_accepted": sum(stats.readings_accepted.values()),
        "readings_landed": sum(stats.readings_landed.values()),
        "rejections": sum(stats.rejections.values()),
        "points_written": w.lines_written,
        "write_batches": w.batches_written,
        "write_seconds": float(w.write_seconds_total),
        "write_retries": w.retries,
        "lines_refused": w.lines_dead_lettered,
        "buffered_lines": w.buffered_lines,
        "last_batch_size": w.last_batch_size,
        "in_flight_messages": stats.in_flight_messages,
        "mqtt_connected": stats.mqtt_connected,
        "deadletters_published": stats.deadletters_published,
        "deadletters_suppressed": sum(stats.deadletters_suppressed.values()),
        "records_refused": sum(stats.records_refused.values()),
    }
    if stats.spool is not None:
        fields.update(spool_depth=stats.spool.depth_records, spool_bytes=stats.spool.bytes_on_disk,
                      spool_age_s=float(stats.spool.oldest_age_s), spool_write_failures=stats.spool.write_failures)
    tags = (("instance", instance),)
    lines = [format_line(PIPELINE, tags, fields, timestamp_ns)]
    lines.extend(
        format_line(PIPELINE_REJECTS, (("instance", instance), ("reason", reason)),
                    {"count": count}, timestamp_ns)
        for reason, count in sorted(stats.rejections.items())
    )
    return lines
