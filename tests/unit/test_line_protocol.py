from __future__ import annotations

import pytest

from citytelemetry.records import Reading
from citytelemetry.sink.line_protocol import (
    escape_key,
    escape_measurement,
    format_field_value,
    format_line,
    reading_line,
)


def test_reading_line_exact() -> None:
    reading = Reading(measurement="tunnel_multigas", device_id="d1", tags=(("device", "d1"), ("site", "hunnan")),
                      fields={"o2": 20.9, "alarms": 3, "ok": True, "mode": "normal"}, timestamp_ms=1_700_000_000_123,
                      seq=7)
    assert reading_line(reading) == (b"tunnel_multigas,device=d1,site=hunnan "
                                     b'o2=20.9,alarms=3i,ok=true,mode="normal",seq=7i 1700000000123000000')


@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1.0"), (0.1, "0.1"), (1e-7, "1e-07"), (-3, "-3i"), (False, "false"),
    ('say "hi"\\', '"say \\"hi\\"\\\\"'), ("a\nb", '"a\\nb"'),
])
def test_field_values(value: float | bool | str, text: str) -> None:
    assert format_field_value(value) == text


def test_non_finite_float_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        format_field_value(float("nan"))


def test_escaping_cannot_create_tags_fields_or_points() -> None:
    line = format_line("m,x=1 y", (("t", "a,b=c d\nnext 1"),), {"f=1,g": "v"}, 5)
    assert line == b'm\\,x=1\\ y,t=a\\,b\\=c\\ d\\nnext\\ 1 f\\=1\\,g="v" 5'
    assert b"\n" not in line


def test_trailing_backslash_cannot_escape_the_separator() -> None:
    assert escape_key("dev\\") == "dev"
    assert escape_measurement("a b") == "a\\ b"


def test_empty_tag_values_are_left_out() -> None:
    assert format_line("m", (("a", ""), ("b", "x")), {"f": 1}, 1) == b"m,b=x f=1i 1"
