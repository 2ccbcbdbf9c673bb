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
    ({"a": 1.5, "ok": True, "mode": "normal", "e": ""}, b'a=1.5,ok=true,mode="normal",e=""'),  # fast path
    ({"s": "a\\b", "ok": False}, b's="a\\\\b",ok=false'),  # a backslash: the general path
    ({"s": "a\tb"}, b's="a\tb"'),  # not printable: the general path (a tab is written as it is)
])
def test_field_text_on_the_fast_and_the_general_path(fields: dict[str, FieldValue], text: bytes) -> None:
    reading = Reading(measurement="m", device_id="d", tags=(), fields=fields, timestamp_ms=1, seq=-1)
    assert reading_line(reading) == b"m " + text + b" 1000000"


@given(st.lists(st.one_of(st.booleans(), st.text(max_size=12)), min_size=1, max_size=8))
def test_strings_and_booleans_are_written_as_the_general_path_writes_them(values: list[bool | str]) -> None:
    fields: dict[str, FieldValue] = {f"f{i}": v for i, v in enumerate(values)}
    line = reading_line(Reading(measurement="m", device_id="d", tags=(), fields=fields, timestamp_ms=1, seq=-1))
    assert line == b"m " + ",".join(f"{k}={format_field_value(v)}" for k, v in fields.items()).encode() + b" 1000000"


def test_a_string_with_a_comma_stays_one_field() -> None:
    """Found by hypothesis: the fast path read the comma before a closing quote as a field separator."""
    fields: dict[str, FieldValue] = {"a": ",", "b": "x,", "c": "x,y", "d": 1.5}
    line = reading_line(Reading(measurement="m", device_id="d", tags=(), fields=fields, timestamp_ms=1, seq=-1))
    assert line == b'm a=",",b="x,",c="x,y",d=1.5 1000000'


def test_a_device_with_new_tags_gets_its_new_series() -> None:
    old, new = (("site", "a"),), (("site", "b"),)
    for tags, series in ((old, b"m,site=a"), (new, b"m,site=b"), (old, b"m,site=a")):
        reading = Reading(measurement="m", device_id="same", tags=tags, fields={"x": 1.0}, timestamp_ms=1, seq=-1)
        assert reading_line(reading) == series + b" x=1.0 1000000"


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=8))
def test_fast_path_floats_read_back_exactly(values: list[float]) -> None:
    fields: dict[str, FieldValue] = {f"f{i}": v for i, v in enumerate(values)}
    line = reading_line(Reading(measurement="m", device_id="d", tags=(), fields=fields, timestamp_ms=1, seq=7))
    series, field_text, timestamp = line.split(b" ")
    assert (series, timestamp) == (b"m", b"1000000")
    parsed = dict(part.split(b"=") for part in field_text.split(b","))
    assert parsed.pop(b"seq") == b"7i"
    assert {k.decode(): float(v) for k, v in parsed.items()} == fields


# --- ranges: a line we build is never refused for its own shape ---------------------------------------
from citytelemetry.sink.line_protocol import (  # noqa: E402 - grouped with the tests that use them
    INT64_MAX,
    INT64_MIN,
    MAX_STRING_BYTES,
    TIME_NS_MAX,
    TIME_NS_MIN,
    LineRangeError,
    bounded_string,
)

from .line_ranges import assert_in_range  # noqa: E402


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 10**400, float("inf"), float("-inf")])
def test_values_without_a_line_protocol_form_raise_a_range_error(value: float) -> None:
    with pytest.raises(LineRangeError):
        format_field_value(value)


def test_the_64_bit_bounds_themselves_are_written() -> None:
    assert format_field_value(INT64_MAX) == "9223372036854775807i"
    assert format_field_value(INT64_MIN) == "-9223372036854775808i"


@pytest.mark.parametrize("timestamp_ns", [TIME_NS_MAX + 1, TIME_NS_MIN - 1])
def test_a_time_influxdb_cannot_store_raises(timestamp_ns: int) -> None:
    with pytest.raises(LineRangeError, match="outside"):
        format_line("m", (), {"f": 1}, timestamp_ns)
    assert format_line("m", (), {"f": 1}, TIME_NS_MAX).endswith(b" 9223372036854775806")


def test_a_point_without_fields_raises() -> None:
    with pytest.raises(LineRangeError, match="at least one field"):
        format_line("m", (), {}, 1)


def test_a_reading_with_an_integer_beyond_64_bits_raises_instead_of_writing_it() -> None:
    reading = Reading(measurement="m", device_id="d", tags=(), fields={"n": 2**63}, timestamp_ms=1, seq=1)
    with pytest.raises(LineRangeError):
        reading_line(reading)


@given(st.text(min_size=0, max_size=40_000))
def test_strings_are_cut_to_the_limit_whole_characters_only(text: str) -> None:
    cut = bounded_string(text, limit=4096)
    assert text.startswith(cut)
    assert len(format_field_value(cut).encode("utf-8", errors="replace")) <= 4096 + 2


def test_a_long_string_field_is_cut_to_64_kib() -> None:
    line = format_line("m", (), {"s": '"' * 200_000}, 1)
    assert MAX_STRING_BYTES - 2 <= len(line) - len(b'm s="" 1') <= MAX_STRING_BYTES


@given(st.dictionaries(st.text(min_size=1, max_size=10),
                       st.integers() | st.floats() | st.booleans() | st.text(max_size=50), min_size=1, max_size=5),
       st.integers())
def test_format_line_either_raises_a_range_error_or_writes_a_line_in_range(
        fields: dict[str, FieldValue], timestamp_ns: int) -> None:
    try:
        line = format_line("m", (("t", "v"),), fields, timestamp_ns)
    except LineRangeError:
        return
    assert_in_range(line)


@pytest.mark.parametrize(("key", "written"), [
    ("a\\", "a"),  # a trailing backslash would escape the '=' after it
    ("\\", "_"),
    ("a\\ b", "a\\ b"),  # 'a\\\\ b' would end the key at the space; influxd refuses a doubled one there
    ("a\\,b", "a\\,b"),
    ("a\\=b", "a\\=b"),
    ("a\\b", "a\\b"),  # a backslash before an ordinary character is a literal backslash
])
def test_backslashes_in_keys_never_escape_a_separator(key: str, written: str) -> None:
    # each written form accepted by influxd 1.6 and read back as one field (checked by hand, 2026-12-02)
    assert format_line("m", (("t", key),), {key: 1.0}, 1) == f"m,t={written} {written}=1.0 1".encode()
