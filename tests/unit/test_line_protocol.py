from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citytelemetry.records import FieldValue, Reading
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



@pytest.mark.parametrize(("fields", "text"), [
    ({"a": 1e-07, "b": 1e20, "c": -0.0, "d": 5.0, "e": 0.1}, b"a=1e-7,b=1e+20,c=-0.0,d=5.0,e=0.1"),  # fast path
    ({"a": 1.5, "b": 2}, b"a=1.5,b=2i"),  # an integer field: the general path
    ({"a b": 1.5}, b"a\\ b=1.5"),  # a key that needs escaping: the general path
    ({"a": 1.5, "s": 'x"y'}, b'a=1.5,s="x\\"y"'),
])
def test_field_text_on_the_fast_and_the_general_path(fields: dict[str, FieldValue], text: bytes) -> None:
    reading = Reading(measurement="m", device_id="d", tags=(), fields=fields, timestamp_ms=1, seq=-1)
    assert reading_line(reading) == b"m " + text + b" 1000000"


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=8))
def test_fast_path_floats_read_back_exactly(values: list[float]) -> None:
    fields: dict[str, FieldValue] = {f"f{i}": v for i, v in enumerate(values)}
    line = reading_line(Reading(measurement="m", device_id="d", tags=(), fields=fields, timestamp_ms=1, seq=7))
    series, field_text, timestamp = line.split(b" ")
    assert (series, timestamp) == (b"m", b"1000000")
    parsed = dict(part.split(b"=") for part in field_text.split(b","))
    assert parsed.pop(b"seq") == b"7i"
    assert {k.decode(): float(v) for k, v in parsed.items()} == fields
