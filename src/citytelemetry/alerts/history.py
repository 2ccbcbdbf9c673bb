"""Alert history in InfluxDB: one ``ct_alerts`` point per firing and per resolution.

Tags are all from the rule and the inventory (bounded cardinality): alertname, severity, state, site,
system, device, device_type and the device's location keys. Fields: value, threshold, summary,
fingerprint. Grafana can use it as an annotation source; the history outlives Alertmanager's memory.
"""

from __future__ import annotations

import math

from citytelemetry.alerts.model import Alert, AlertState
from citytelemetry.measurements import ALERTS
from citytelemetry.records import FieldValue
from citytelemetry.sink.line_protocol import NS_PER_MS, format_line


def alert_line(alert: Alert) -> bytes:
    tags = dict(alert.labels)
    tags["state"] = alert.state.value
    if alert.subject.device_type:
        tags["device_type"] = alert.subject.device_type
    fields: dict[str, FieldValue] = {}
    # A rule's value or threshold can be infinite (a rate over no time, a YAML .inf); line protocol has no
    # such float and would refuse the whole point: leave it out, the summary and fingerprint still say it.
    if math.isfinite(alert.value):
        fields["value"] = float(alert.value)
    if alert.threshold is not None and math.isfinite(alert.threshold):
        fields["threshold"] = float(alert.threshold)
    fields["summary"] = alert.summary
    fields["fingerprint"] = alert.fingerprint
    ts_ms = alert.resolved_ms if alert.state is AlertState.RESOLVED else alert.fired_ms
    return format_line(ALERTS, tuple(sorted(tags.items())), fields, (ts_ms or alert.since_ms) * NS_PER_MS)
