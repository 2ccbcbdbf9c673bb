"""A strict check that a line we wrote is in range for InfluxDB (each bound measured against influxd 1.6)."""

from __future__ import annotations

import math

from citytelemetry.sink.line_protocol import INT64_MAX, INT64_MIN, MAX_STRING_BYTES, TIME_NS_MAX, TIME_NS_MIN

from .test_hostile_input import Point, parse_line


def assert_in_range(line: bytes) -> Point:
    point = parse_line(line)
    assert point.fields, line[:200]
    assert TIME_NS_MIN <= point.timestamp <= TIME_NS_MAX, line[:200]
    for key, raw in point.fields.items():
        assert key != "time", line[:200]
        if raw.startswith('"'):
            assert len(raw[1:-1].encode()) <= MAX_STRING_BYTES, (key, len(raw))
        elif raw in {"true", "false"}:
            pass
        elif raw.endswith("i"):
            assert INT64_MIN <= int(raw[:-1]) <= INT64_MAX, (key, raw)
        else:
            assert math.isfinite(float(raw)), (key, raw)
    return point
