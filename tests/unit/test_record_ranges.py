"""Every record the pipeline writes about itself is in range for its line-protocol type, at the extremes."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from citytelemetry.alerts.history import alert_line
from citytelemetry.alerts.model import Alert, AlertState, RuleInfo, Severity, Subject
from citytelemetry.observability.completeness import CompletenessTracker
from citytelemetry.observability.selfmetrics import selfmetrics_lines
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.sink.line_protocol import INT64_MAX, TIME_NS_MAX
from citytelemetry.sink.spool.wal import SpoolStats

from .catalog_fixture import make_catalog
from .line_ranges import assert_in_range

counters = st.integers(min_value=0, max_value=INT64_MAX)


@given(counters, counters, st.floats(min_value=0, max_value=1e300), counters)
def test_self_metrics_at_the_extremes(count: int, written: int, seconds: float, depth: int) -> None:
    stats = PipelineStats(messages_received=count, messages_settled=count, rejections=Counter({"not_json": count}))
    stats.write.lines_written = written
    stats.write.write_seconds_total = seconds
    stats.spool = SpoolStats(depth_records=depth, bytes_on_disk=depth, oldest_age_s=seconds)
    for line in selfmetrics_lines(stats, "i1", TIME_NS_MAX):
        assert_in_range(line)


def test_completeness_at_the_extremes() -> None:
    tracker = CompletenessTracker(make_catalog())
    tracker.landed("tun-c001-gas1", 0)
    tracker.landed("tun-c001-gas1", INT64_MAX)  # a gap of 2^63 - 2 readings
    tracker.duplicate("tun-c001-gas1")
    [line] = tracker.lines(1)
    point = assert_in_range(line)
    assert point.fields["gaps"] == f"{INT64_MAX - 1}i"


@given(st.floats(allow_nan=True, allow_infinity=True), st.none() | st.floats(allow_nan=True, allow_infinity=True))
def test_alert_history_leaves_out_what_has_no_line_protocol_form(value: float, threshold: float | None) -> None:
    rule = RuleInfo(name="gas_high", severity=Severity("critical"), for_ms=0, summary="{subject} at {value}",
                    source="t", runbook="r", kind="threshold", scope="s", condition="c")
    subject = Subject(key="tun-c001-gas1", labels=(("site", "hunnan"), ("device", "tun-c001-gas1")))
    alert = Alert(rule=rule, subject=subject, state=AlertState.FIRING, since_ms=1, value=value, threshold=threshold,
                  fired_ms=2)
    point = assert_in_range(alert_line(alert))
    assert ("value" in point.fields) == math.isfinite(value)
