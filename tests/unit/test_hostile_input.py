"""Hostile input: whatever a device sends, the validator answers with readings or reason-coded rejections,
never raises, and nothing it lets through can add a tag, a field, a line or a point to InfluxDB.

Property tests (hypothesis) over random bytes, random JSON and near-valid readings, plus one example per
hostile payload kind of issue 7. Known validator bugs found here live in test_hostile_input_pending.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citytelemetry.contracts import InboundMessage
from citytelemetry.deadletters import summarize
from citytelemetry.profiles import Catalog
from citytelemetry.records import Outcome, Reason, Rejection
from citytelemetry.sink.deadletter import DeadLetterFormatter
from citytelemetry.sink.line_protocol import reading_line
from citytelemetry.testing import NeverSettled
from citytelemetry.validate import Limits, MessageValidator

from .catalog_fixture import make_catalog

# --- a strict reader of the line protocol we write ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, str]  # raw value text: 1.5, 3i, true, "text" (unescaped, quotes kept)
    timestamp: int


def _split(text: str, separators: str, *, quotes: bool = False) -> tuple[str, str, str]:
    """Cut ``text`` at the first unescaped separator (outside a quoted string if ``quotes``); escapes kept."""
    i, quoted = 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            i += 2
            continue
        if quotes and ch == '"':
            quoted = not quoted
        elif not quoted and ch in separators:
            return text[:i], ch, text[i + 1:]
        i += 1
    assert not quoted, f"unterminated string in {text!r}"
    return text, "", ""


def _unescape(raw: str, escapable: str) -> str:
    out, i = [], 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw) and raw[i + 1] in escapable:
            out.append(raw[i + 1])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def _key(raw: str) -> str:
    return _unescape(raw, ",= ")


def _value(raw: str) -> str:
    return _unescape(raw, '"\\') if raw.startswith('"') else raw


def parse_line(raw: bytes) -> Point:
    assert b"\n" not in raw, f"raw line break in {raw!r}"
    assert b"\r" not in raw, f"raw carriage return in {raw!r}"
    text = raw.decode()
    measurement, sep, rest = _split(text, ", ")
    tags: dict[str, str] = {}
    while sep == ",":
        pair, sep, rest = _split(rest, ", ")
        key, eq, value = _split(pair, "=")
        assert eq == "=", f"bad tag {pair!r} in {raw!r}"
        assert key, f"empty tag key in {raw!r}"
        assert value, f"empty tag value in {raw!r}"
        assert "=" not in _split(value, "=")[1], f"second = in tag {pair!r}"
        assert _key(key) not in tags, f"tag {key} twice in {raw!r}"
        tags[_key(key)] = _key(value)
    assert sep == " ", f"no field set in {raw!r}"
    fields: dict[str, str] = {}
    while True:
        key, eq, rest = _split(rest, "=")
        assert eq == "=", f"bad field in {raw!r}"
        value, sep, rest = _split(rest, ", ", quotes=True)
        assert _key(key) not in fields, f"field {key} twice in {raw!r}"
        fields[_key(key)] = _value(value)
        if sep == " ":
            break
        assert sep == ",", f"line ends inside the field set: {raw!r}"
    assert rest.lstrip("-").isdigit(), f"timestamp {rest!r} in {raw!r}"
    return Point(_key(measurement), tags, fields, int(rest))


def unquote(value: str) -> str:
    assert value.startswith('"'), value
    assert value.endswith('"'), value
    return value[1:-1]


# --- the validator under attack ---------------------------------------------------------------------
NOW = 1_780_000_000_000
DEVICE = "tun-c001-gas1"
TOPIC = f"ct/v1/hunnan/tunnel/{DEVICE}/telemetry"
STATUS_TOPIC = f"ct/v1/hunnan/tunnel/{DEVICE}/status"
CATALOG = make_catalog()
PROFILE = CATALOG.devices[DEVICE].profile
TAG_KEYS = {k for k, _ in CATALOG.devices[DEVICE].tags}
LIMITS = Limits(max_payload_bytes=4096, max_readings_per_message=20, max_future_s=300, max_age_s=86_400)
SUFFIX = {"float": lambda v: v.replace(".", "", 1).lstrip("-").replace("e-", "").replace("e+", "").isdigit(),
          "int": lambda v: v.endswith("i") and v[:-1].lstrip("-").isdigit(),
          "bool": lambda v: v in {"true", "false"},
          "enum": lambda v: v.startswith('"')}


def validator(catalog: Catalog = CATALOG) -> MessageValidator:
    return MessageValidator(catalog, LIMITS, clock_ms=lambda: NOW)


def message(payload: bytes | dict[str, Any], topic: str = TOPIC) -> InboundMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return InboundMessage(topic=topic, payload=body, received_ms=NOW, delivery=NeverSettled())


def check_outcome(outcome: Outcome) -> None:
    """Every message ends somewhere, and every point it gives has exactly the shape its profile allows."""
    assert outcome.readings or outcome.rejections
    for reading in outcome.readings:
        point = parse_line(reading_line(reading))
        if point.measurement == "ct_device_status":
            assert set(point.fields) == {"state", "online"}
        else:
            assert point.measurement == PROFILE.type
            assert set(point.fields) <= {*PROFILE.measurements, "seq"}
            for key, raw in point.fields.items():
                kind = "int" if key == "seq" else PROFILE.measurements[key].value_type.value
                assert SUFFIX[kind](raw), f"{key}={raw} is not a {kind}"
        assert set(point.tags) == TAG_KEYS
        assert point.tags == dict(CATALOG.devices[DEVICE].tags)
    dead = DeadLetterFormatter(CATALOG, "ct-test")
    for rejection in outcome.rejections:
        assert isinstance(rejection.reason, Reason)
        check_dead_letter(dead, rejection)
    if outcome.rejections:  # what the handler writes: one dead letter for the whole message
        point = parse_line(dead.line(summarize(outcome.rejections), NOW))
        assert int(point.fields["count"].removesuffix("i")) == len(outcome.rejections)


def as_stored(text: str) -> str:
    """What InfluxDB stores for a string field we wrote: line breaks arrive as the two characters \\n."""
    return text.replace("\n", "\\n").replace("\r", "\\r")


def check_dead_letter(dead: DeadLetterFormatter, rejection: Rejection) -> None:
    point = parse_line(dead.line(summarize([rejection]), NOW))
    assert point.measurement == "ct_rejects"
    expected_tags = {"instance", "reason"} | (TAG_KEYS if rejection.device_id else set())
    assert set(point.tags) == expected_tags
    assert point.tags["reason"] == rejection.reason.value
    assert set(point.fields) <= {"detail", "topic", "excerpt", "count", "reasons", "seq", "seq_text", "field"}
    assert unquote(point.fields["excerpt"]) == as_stored(rejection.excerpt)
    assert unquote(point.fields["topic"]) == as_stored(rejection.topic[:256])
    if rejection.measurement is not None:
        assert unquote(point.fields["field"]) == as_stored(rejection.measurement)
    json.loads(dead.notice(summarize([rejection]), NOW))


# --- strategies --------------------------------------------------------------------------------------
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
hostile_text = st.lists(st.sampled_from([*',= "\\\n\r\t\x00\x1b\'=/+#', "o2", "ch4", "é", "\u2028"]),
                        max_size=12).map("".join)
measurement_keys = st.sampled_from([*PROFILE.measurements, "seq", "time", "o2 ", "o2,x=1", 'o2"']) | hostile_text
values = st.dictionaries(measurement_keys, json_values, max_size=6)
timestamps = (st.integers(min_value=NOW - 2 * 86_400_000, max_value=NOW + 600_000) | st.integers()
              | st.text(max_size=30) | st.floats() | st.sampled_from(["2026-05-28T20:26:40Z", "9999-12-31T23:59:59Z"]))
readings = st.fixed_dictionaries({"seq": st.integers(min_value=-5, max_value=2**63 - 1) | json_values,
                                  "ts": timestamps, "values": values | json_values})
envelopes = st.one_of(
    readings.map(lambda r: {"device": DEVICE, **r}),
    st.lists(readings, max_size=25).map(lambda rs: {"device": DEVICE, "readings": rs}),
    st.fixed_dictionaries({"device": st.sampled_from([DEVICE, "other"]) | hostile_text | json_values,
                           "seq": st.integers(), "ts": timestamps, "values": values}),
    json_values,
)
topics = st.sampled_from([TOPIC, "ct/v1/hunnan/tunnel/tun-c001-gas2/telemetry",
                          "ct/v1/x/tunnel/tun-c001-gas1/telemetry", "ct/v1/deadletter/not_json", "ct/v1", ""]) \
    | hostile_text | st.builds("ct/v1/hunnan/tunnel/{}/telemetry".format, hostile_text)

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(payload=st.binary(max_size=5000), topic=topics)
def test_random_bytes_on_any_topic_end_in_readings_or_rejections(payload: bytes, topic: str) -> None:
    check_outcome(validator()(message(payload, topic)))


@PROPERTY
@given(body=envelopes)
def test_random_json_never_raises_and_never_injects(body: Any) -> None:
    payload = json.dumps(body, allow_nan=True).encode()
    check_outcome(validator()(message(payload)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(envelopes, min_size=1, max_size=5))
def test_a_device_sending_a_stream_of_hostile_messages_never_breaks_the_validator(batch: list[Any]) -> None:
    validate = validator()
    for body in batch:
        check_outcome(validate(message(json.dumps(body, allow_nan=True).encode())))
    good = validate(message({"device": DEVICE, "seq": 2**62, "ts": NOW + 1, "values": {"o2": 20.9}}))
    assert [r.fields for r in good.readings] == [{"o2": 20.9}]


# --- one example per hostile payload kind (issue 7) -------------------------------------------------
def good(seq: int = 5, **values: Any) -> dict[str, Any]:
    return {"device": DEVICE, "seq": seq, "ts": NOW - 1000 + seq, "values": values or {"o2": 20.9}}


def _raw(text: str) -> bytes:
    return text.encode()


HOSTILE: dict[str, tuple[bytes | dict[str, Any], str, set[Reason]]] = {
    "not utf-8": (b'{"device": "\xff\xfe"}', TOPIC, {Reason.NOT_UTF8}),
    "latin-1 text": ('{"device": "caf\xe9"}'.encode("latin-1"), TOPIC, {Reason.NOT_UTF8}),
    "not json": (b"o2=20.9", TOPIC, {Reason.NOT_JSON}),
    "truncated json": (b'{"device": "tun-c001-gas1", "seq": 1, "ts": ', TOPIC, {Reason.NOT_JSON}),
    "json array": (b"[1, 2, 3]", TOPIC, {Reason.BAD_SCHEMA}),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, TOPIC, {Reason.PAYLOAD_TOO_LARGE}),
    "deeply nested, small": (_raw('{"device": "tun-c001-gas1", "seq": 1, "ts": 1, "values": {"o2": '
                                  + "[" * 1500 + "]" * 1500 + "}}"), TOPIC, {Reason.NOT_JSON}),
    "nested value": (good(o2=[[[[[[20.9]]]]]]), TOPIC, {Reason.WRONG_TYPE}),
    "huge payload": (b'{"device": "' + b"x" * 100_000 + b'"}', TOPIC, {Reason.PAYLOAD_TOO_LARGE}),
    "huge float": (_raw(f'{{"device": "{DEVICE}", "seq": 1, "ts": {NOW}, "values": {{"o2": 1e400}}}}'), TOPIC,
                   {Reason.NOT_JSON}),
    "huge integer": (good(alarms=2**63), TOPIC, {Reason.OUT_OF_RANGE, Reason.WRONG_TYPE}),
    "NaN": (_raw(f'{{"device": "{DEVICE}", "seq": 1, "ts": {NOW}, "values": {{"o2": NaN}}}}'), TOPIC,
            {Reason.NOT_JSON}),
    "Infinity": (_raw(f'{{"device": "{DEVICE}", "seq": 1, "ts": {NOW}, "values": {{"o2": -Infinity}}}}'), TOPIC,
                 {Reason.NOT_JSON}),
    "boolean for a number": (good(o2=True), TOPIC, {Reason.WRONG_TYPE}),
    "string for a number": (good(o2="20.9"), TOPIC, {Reason.WRONG_TYPE}),
    "float for an integer": (good(alarms=3.0), TOPIC, {Reason.WRONG_TYPE}),
    "number for a boolean": (good(heater_on=1), TOPIC, {Reason.WRONG_TYPE}),
    "unknown state": (good(mode="normal\n"), TOPIC, {Reason.OUT_OF_RANGE}),
    "measurement with comma": (good(**{"o2,site=evil": 1.0}), TOPIC, {Reason.UNKNOWN_MEASUREMENT}),
    "measurement with space and =": (good(**{"o2 x=1": 1.0}), TOPIC, {Reason.UNKNOWN_MEASUREMENT}),
    "measurement with newline": (good(**{"o2\nevil,device=x v=1 1": 1.0}), TOPIC, {Reason.UNKNOWN_MEASUREMENT}),
    "measurement with quote and backslash": (good(**{'o2"\\': 1.0}), TOPIC, {Reason.UNKNOWN_MEASUREMENT}),
    "measurement with control characters": (good(**{"o2\x00\x1b[31m": 1.0}), TOPIC, {Reason.UNKNOWN_MEASUREMENT}),
    "device id with comma in topic": (good(), "ct/v1/hunnan/tunnel/tun-c001-gas1,site=x/telemetry",
                                      {Reason.UNKNOWN_DEVICE}),
    "device id with newline in topic": (good(), "ct/v1/hunnan/tunnel/tun\nc001/telemetry", {Reason.UNKNOWN_DEVICE}),
    "device id with spaces and quotes in payload": ({**good(), "device": 'tun-c001-gas1" x=1'}, TOPIC,
                                                    {Reason.DEVICE_MISMATCH}),
    "another device's topic": ({**good(), "device": DEVICE}, "ct/v1/hunnan/tunnel/tun-c002-gas1/telemetry",
                               {Reason.UNKNOWN_DEVICE}),
    "wrong site in topic": (good(), f"ct/v1/evil/tunnel/{DEVICE}/telemetry", {Reason.DEVICE_MISMATCH}),
    "payload names another device": ({**good(), "device": "tun-c002-gas1"}, TOPIC, {Reason.DEVICE_MISMATCH}),
    "topic with extra level": (good(), f"ct/v1/hunnan/tunnel/{DEVICE}/telemetry/x", {Reason.BAD_TOPIC}),
    "timestamp far in the future": ({**good(), "ts": NOW + 10 * 365 * 86_400_000}, TOPIC,
                                    {Reason.TIMESTAMP_IN_FUTURE}),
    "timestamp in year 9999": ({**good(), "ts": "9999-12-31T23:59:59Z"}, TOPIC, {Reason.TIMESTAMP_IN_FUTURE}),
    "timestamp before 1970": ({**good(), "ts": -(2**62)}, TOPIC, {Reason.TIMESTAMP_TOO_OLD}),
    "timestamp as float": ({**good(), "ts": NOW + 0.5}, TOPIC, {Reason.BAD_SCHEMA}),
    "timestamp without offset": ({**good(), "ts": "2026-05-28T20:26:40"}, TOPIC, {Reason.BAD_SCHEMA}),
    "negative seq": ({**good(), "seq": -1}, TOPIC, {Reason.BAD_SCHEMA}),
    "seq as string": ({**good(), "seq": "1"}, TOPIC, {Reason.BAD_SCHEMA}),
    "too many readings": ({"device": DEVICE, "readings": [good(i)for i in range(1, 30)]}, TOPIC,
                          {Reason.TOO_MANY_READINGS}),
    "readings not a list": ({"device": DEVICE, "readings": {"seq": 1}}, TOPIC, {Reason.BAD_SCHEMA}),
    "empty values": ({**good(), "values": {}}, TOPIC, {Reason.BAD_SCHEMA}),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_each_hostile_payload_gets_its_reason_and_good_data_beside_it_lands(kind: str) -> None:
    payload, topic, reasons = HOSTILE[kind]
    validate = validator()
    before = validate(message(good(1)))
    outcome = validate(message(payload, topic))
    after = validate(message(good(9)))

    check_outcome(outcome)
    assert {r.reason for r in outcome.rejections} <= reasons, [(r.reason, r.detail) for r in outcome.rejections]
    assert outcome.rejections
    assert [r.seq for r in before.readings + after.readings] == [1, 9]


def test_replayed_old_sequence_numbers_are_refused() -> None:
    validate = validator()
    for seq in (3, 10, 11, 12):
        assert validate(message(good(seq))).readings
    # A replay repeats what was seen: every seen seq of the window is refused, however old.
    replays = [validate(message(good(seq))) for seq in (12, 11, 3)]
    assert [o.rejections[0].reason for o in replays] == [Reason.DUPLICATE_SEQUENCE] * 3
    assert all(not o.readings for o in replays)


def test_a_flood_from_one_device_is_validated_without_growth_and_the_other_readings_land() -> None:
    validate = validator()
    junk = [validate(message(b"\x00" * 100)) for _ in range(5000)]
    assert {o.rejections[0].reason for o in junk} == {Reason.BAD_SCHEMA, Reason.NOT_JSON} & {
        o.rejections[0].reason for o in junk}
    assert validate(message(good(1))).readings


def test_a_batch_with_hostile_readings_lands_its_good_ones() -> None:
    batch = {"device": DEVICE, "readings": [
        {"seq": 1, "ts": NOW - 3000, "values": {"o2": 20.9, "ch4": "high", "o2\n": 1}},
        {"seq": "two", "ts": NOW - 2000, "values": {"o2": 20.8}},
        {"seq": 3, "ts": NOW + 10**9, "values": {"o2": 20.7}},
        {"seq": 4, "ts": NOW - 1000, "values": {"o2": 20.6}},
    ]}
    outcome = validator()(message(batch))
    check_outcome(outcome)
    assert [(r.seq, r.fields) for r in outcome.readings] == [(1, {"o2": 20.9}), (4, {"o2": 20.6})]
    assert sorted(r.reason.value for r in outcome.rejections) == [
        "bad_schema", "timestamp_in_future", "unknown_measurement", "wrong_type"]


def test_orjson_and_json_agree_on_what_we_generate() -> None:
    assert orjson.loads(json.dumps(good())) == good()


@dataclass(frozen=True, slots=True)
class _Reader:
    """Self-test of the line-protocol reader: it must see an injected field or tag."""

    line: bytes


@pytest.mark.parametrize(("line", "tags", "fields"), [
    (b'm,a=1,b=x\\,y f="a\\"b",g=1i 5', {"a": "1", "b": "x,y"}, {"f": '"a"b"', "g": "1i"}),
    (b'm f="a, b=2" 5', {}, {"f": '"a, b=2"'}),
    (b"m\\ x,t\\=k=v\\ w f=1 5", {"t=k": "v w"}, {"f": "1"}),
])
def test_the_line_reader_splits_on_unescaped_separators_only(line: bytes, tags: dict[str, str],
                                                             fields: dict[str, str]) -> None:
    point = parse_line(_Reader(line).line)
    assert (point.tags, point.fields, point.timestamp) == (tags, fields, 5)
