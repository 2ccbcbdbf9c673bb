"""Pipeline health from the pipeline's own metrics (ct_pipeline, ct_pipeline_rejects, ct_rejects) and the
alerting stage's notifications (ct_alerts). Counters are cumulative: panels show their rates."""

# ruff: noqa: S608 - InfluxQL from schema-checked identifiers, quoted; multiplication and minus signs are panel text

from __future__ import annotations

from citytelemetry.dashboards import influxql as q
from citytelemetry.dashboards.kpi import KpiSettings
from citytelemetry.dashboards.layout import Layout
from citytelemetry.dashboards.model import DashboardSpec, Variable, tag_values
from citytelemetry.dashboards.panels import Query, state_timeline, table, timeseries
from citytelemetry.profiles import Catalog

INSTANCE = q.var_match("instance")
PIPELINE = '"ct_pipeline"'


def _rates(fields: dict[str, str], per: str = "1s") -> str:
    columns = ", ".join(f"non_negative_derivative(last({q.ident(f)}), {per}) AS {q.ident(label)}"
                        for f, label in fields.items())
    return (f"SELECT {columns} FROM {PIPELINE} WHERE {q.where(INSTANCE)} "
            'GROUP BY time($__interval), "instance" fill(none)')


def _gauges(fields: dict[str, str]) -> str:
    columns = ", ".join(f"last({q.ident(f)}) AS {q.ident(label)}" for f, label in fields.items())
    return (f"SELECT {columns} FROM {PIPELINE} WHERE {q.where(INSTANCE)} "
            'GROUP BY time($__interval), "instance" fill(none)')


def _ingest(layout: Layout) -> None:
    layout.row("Ingest")
    layout.add(timeseries("Ingest rate", "Per second: MQTT messages received and settled, readings accepted "
                          "and landed, points written (derivatives of the ct_pipeline counters).",
                          [Query(_rates({"messages_received": "messages received", "messages_settled": "settled",
                                         "readings_accepted": "readings accepted", "readings_landed": "landed",
                                         "points_written": "points written"}), alias="$col $tag_instance")],
                          unit="ops"))
    reasons = ('SELECT non_negative_derivative(last("count"), 1s) AS "rate" FROM "ct_pipeline_rejects" '
               f'WHERE {q.where(INSTANCE)} GROUP BY time($__interval), "reason", "instance" fill(none)')
    layout.add(timeseries("Rejects by reason", "Rejections per second by reason code (ct_pipeline_rejects); "
                          "see docs/device-contract.md for the codes.", [Query(reasons, alias="$tag_reason")],
                          unit="ops", stacked=True, bars=True))
    recent = ('SELECT "reason", "device", "topic", "field", "detail", "excerpt" FROM "ct_rejects" '
              'WHERE $timeFilter AND "site" =~ /^$site$/ ORDER BY time DESC LIMIT 200')
    layout.add(table("Latest rejections", "The 200 latest dead letters (ct_rejects) with reason, device, topic, "
                     "field, detail and an excerpt of the payload.", [Query(recent, table=True)]), w=24, h=8)


def _writes(layout: Layout) -> None:
    layout.row("Writes to InfluxDB")
    latency = ('SELECT non_negative_difference(last("write_seconds")) / '
               'non_negative_difference(last("write_batches")) '
               f'AS "mean write latency" FROM {PIPELINE} WHERE {q.where(INSTANCE)} '
               'GROUP BY time($__interval), "instance" fill(none)')
    layout.add(timeseries("Write latency", "Seconds per batch write: increase of write_seconds ÷ increase of "
                          "write_batches per interval.", [Query(latency, alias="$col $tag_instance")], unit="s"))
    layout.add(timeseries("Batches, retries, refused lines", "Per second: batches written, write retries, lines "
                          "refused by InfluxDB (dead-lettered as write_rejected), dead letters published.",
                          [Query(_rates({"write_batches": "batches", "write_retries": "retries",
                                         "lines_refused": "refused lines", "deadletters_published": "dead letters"}),
                                 alias="$col $tag_instance")], unit="ops"))
    layout.add(timeseries("Buffer and in-flight", "Lines buffered for writing, messages in flight (not yet "
                          "acknowledged to the broker), size of the last batch.",
                          [Query(_gauges({"buffered_lines": "buffered lines", "in_flight_messages": "in flight",
                                          "last_batch_size": "last batch"}), alias="$col $tag_instance")]))
    connected = (f'SELECT last("mqtt_connected") AS "connected" FROM {PIPELINE} WHERE {q.where(INSTANCE)} '
                 'GROUP BY time($__interval), "instance" fill(none)')
    mappings = [{"type": "value", "options": {"true": {"color": "green", "index": 0, "text": "connected"},
                                              "false": {"color": "red", "index": 1, "text": "disconnected"}}}]
    layout.add(state_timeline("MQTT connection", "The pipeline's broker connection per instance.",
                              [Query(connected, alias="$tag_instance")], mappings))


def _spool_and_alerts(layout: Layout) -> None:
    layout.row("Spool and alerts")
    layout.add(timeseries("Spool depth", "Messages held in the local spool (ct_pipeline.spool_depth).",
                          [Query(_gauges({"spool_depth": "spool depth"}), alias="$col $tag_instance")], unit="short"),
               w=8)
    layout.add(timeseries("Spool age", "Age of the oldest spooled message (ct_pipeline.spool_age_s).",
                          [Query(_gauges({"spool_age_s": "oldest"}), alias="$col $tag_instance")], unit="s"), w=8)
    layout.add(timeseries("Redeliveries", "Redelivered messages per minute (ct_pipeline.redeliveries).",
                          [Query(_rates({"redeliveries": "redeliveries"}, "1m"), alias="$col $tag_instance")],
                          unit="short"), w=8)
    sent = ('SELECT count("fingerprint") AS "notifications" FROM "ct_alerts" WHERE $timeFilter AND "site" =~ /^$site$/ '
            'GROUP BY time($__interval), "state", "severity" fill(none)')
    layout.add(timeseries("Alert notifications sent", "Notifications written by the alerting stage (ct_alerts) "
                          "per interval, by state and severity.", [Query(sent, alias="$tag_state $tag_severity")],
                          unit="short", stacked=True, bars=True), w=24)


def build(catalog: Catalog, settings: KpiSettings) -> DashboardSpec:  # noqa: ARG001 - same signature for all
    layout = Layout()
    _ingest(layout)
    _writes(layout)
    _spool_and_alerts(layout)
    variables = [Variable("site", "Site", tag_values("site", '"ct_rejects"')),
                 Variable("instance", "Instance", tag_values("instance", PIPELINE))]
    return DashboardSpec(uid="ct-pipeline", title="citytelemetry / Pipeline health",
                         description="Ingest rate, rejects by reason, write latency, buffer, spool and redeliveries, "
                                     "alert notifications.", tags=("citytelemetry", "pipeline"),
                         variables=variables, panels=layout.panels, time_from="now-1h")
