from __future__ import annotations

import orjson
import pytest

from citytelemetry.contracts import InboundMessage
from citytelemetry.records import Outcome, Reason
from citytelemetry.testing import NeverSettled
from citytelemetry.validate import Limits, MessageValidator
from citytelemetry.validate.sequence import SequenceTracker

from .catalog_fixture import make_catalog

NOW = 1_780_000_000_000
TOPIC = "ct/v1/hunnan/tunnel/tun-c001-gas1/telemetry"


def message(payload: bytes | dict[str, object], topic: str = TOPIC) -> InboundMessage:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return InboundMessage(topic=topic, payload=body, received_ms=NOW, delivery=NeverSettled())


def reading(seq: int = 1, ts: object = NOW, **values: object) -> dict[str, object]:
    return {"device": "tun-c001-gas1", "seq": seq, "ts": ts, "values": values or {"o2": 20.9, "ch4": 1.5}}


@pytest.fixture
def validate() -> MessageValidator:
    return MessageValidator(make_catalog(), Limits(max_payload_bytes=1024, max_readings_per_message=3),
                            clock_ms=lambda: NOW)


def test_valid_reading_keeps_types_timestamp_and_inventory_tags(validate: MessageValidator) -> None:
    outcome = validate(message(reading(o2=20, ch4=1.5, alarms=3, heater_on=True, mode="normal")))
    assert outcome.rejections == []
    [point] = outcome.readings
    assert point.fields == {"o2": 20.0, "ch4": 1.5, "alarms": 3, "heater_on": True, "mode": "normal"}
    assert type(point.fields["o2"]) is float
    assert type(point.fields["alarms"]) is int
    assert point.timestamp_ms == NOW
    assert point.seq == 1
    assert dict(point.tags) == {"site": "hunnan", "system": "tunnel", "device": "tun-c001-gas1",
                                "device_type": "tunnel_multigas", "cabin": "power", "compartment": "c001"}


def test_a_value_converted_or_refused_mid_reading_keeps_the_fields_around_it_in_order(
        validate: MessageValidator) -> None:
    """The fields are the decoded object itself until a value is converted or refused, then a copy."""
    converted = validate(message(reading(ch4=1.5, o2=21, heater_on=False, mode="normal")))
    [point] = converted.readings
    assert list(point.fields.items()) == [("ch4", 1.5), ("o2", 21.0), ("heater_on", False), ("mode", "normal")]
    assert type(point.fields["o2"]) is float
    assert point.plain is True
    refused = validate(message(reading(seq=2, ts=NOW - 2000, ch4=1.5, mode="boost", o2=20.5, alarms=2, co2=1.0)))
    [point] = refused.readings
    assert list(point.fields.items()) == [("ch4", 1.5), ("o2", 20.5), ("alarms", 2)]
    assert point.plain is False  # an integer field: the line protocol's general path (its "i")
    assert [(r.reason, r.measurement) for r in refused.rejections] == [
        (Reason.OUT_OF_RANGE, "mode"), (Reason.UNKNOWN_MEASUREMENT, "co2")]
    kept = validate(message(reading(seq=3, ts=NOW - 1000, ch4=1.25, o2=20.75)))
    assert [(r.fields, r.plain) for r in kept.readings] == [({"ch4": 1.25, "o2": 20.75}, True)]


def test_rfc3339_timestamp_is_accepted(validate: MessageValidator) -> None:
    outcome = validate(message(reading(ts="2026-05-28T20:26:40Z")))
    assert [r.timestamp_ms for r in outcome.readings] == [1_780_000_000_000]


def test_batch_form_gives_one_reading_each(validate: MessageValidator) -> None:
    batch = {"device": "tun-c001-gas1", "readings": [
        {"seq": 1, "ts": NOW - 2000, "values": {"o2": 20.9}},
        {"seq": 2, "ts": NOW - 1000, "values": {"o2": 20.8}},
    ]}
    outcome = validate(message(batch))
    assert [(r.seq, r.fields) for r in outcome.readings] == [(1, {"o2": 20.9}), (2, {"o2": 20.8})]


@pytest.mark.parametrize(("payload", "topic", "reason"), [
    (b"{not json", TOPIC, Reason.NOT_JSON),
    (b"\xff\xfe{}", TOPIC, Reason.NOT_UTF8),
    (b'{"o2": NaN}', TOPIC, Reason.NOT_JSON),
    (b"[1, 2]", TOPIC, Reason.BAD_SCHEMA),
    (b"x" * 1025, TOPIC, Reason.PAYLOAD_TOO_LARGE),
    (orjson.dumps(reading()), "ct/v1/hunnan/tunnel/nobody/telemetry", Reason.UNKNOWN_DEVICE),
    (orjson.dumps(reading()), "ct/v1/hunnan/station/tun-c001-gas1/telemetry", Reason.DEVICE_MISMATCH),
    (orjson.dumps(reading()), "ct/v1/hunnan/tun-c001-gas1/telemetry", Reason.BAD_TOPIC),
    (orjson.dumps(reading()), "other/hunnan/tunnel/tun-c001-gas1/telemetry", Reason.BAD_TOPIC),
    (orjson.dumps({**reading(), "device": "tun-c002-gas1"}), TOPIC, Reason.DEVICE_MISMATCH),
    (orjson.dumps({"seq": 1, "ts": NOW, "values": {"o2": 1.0}}), TOPIC, Reason.BAD_SCHEMA),
    (orjson.dumps({"device": "tun-c001-gas1", "readings": [reading(i) for i in range(1, 5)]}), TOPIC,
     Reason.TOO_MANY_READINGS),
    (orjson.dumps({"device": "tun-c001-gas1", "readings": []}), TOPIC, Reason.BAD_SCHEMA),
])
def test_message_level_rejections(validate: MessageValidator, payload: bytes, topic: str, reason: Reason) -> None:
    outcome = validate(message(payload, topic))
    assert outcome.readings == []
    assert [r.reason for r in outcome.rejections] == [reason]
    assert outcome.rejections[0].topic == topic


@pytest.mark.parametrize(("changes", "reason"), [
    ({"ts": NOW + 301_000}, Reason.TIMESTAMP_IN_FUTURE),
    ({"ts": NOW - 8 * 86_400_000}, Reason.TIMESTAMP_TOO_OLD),
    ({"ts": "yesterday"}, Reason.BAD_SCHEMA),
    ({"ts": "2026-05-28T20:26:40"}, Reason.BAD_SCHEMA),
    ({"ts": 1.5e12}, Reason.BAD_SCHEMA),
    ({"seq": -1}, Reason.BAD_SCHEMA),
    ({"seq": True}, Reason.BAD_SCHEMA),
    ({"values": {}}, Reason.BAD_SCHEMA),
])
def test_reading_level_rejections(validate: MessageValidator, changes: dict[str, object], reason: Reason) -> None:
    outcome = validate(message({**reading(), **changes}))
    assert outcome.readings == []
    assert [r.reason for r in outcome.rejections] == [reason]


@pytest.mark.parametrize(("values", "reason", "field"), [
    ({"o2": 25.1}, Reason.OUT_OF_RANGE, "o2"),
    ({"o2": -0.1}, Reason.OUT_OF_RANGE, "o2"),
    ({"o2": "20.9"}, Reason.WRONG_TYPE, "o2"),
    ({"o2": True}, Reason.WRONG_TYPE, "o2"),
    ({"alarms": 2.0}, Reason.WRONG_TYPE, "alarms"),
    ({"alarms": 1001}, Reason.OUT_OF_RANGE, "alarms"),
    ({"heater_on": 1}, Reason.WRONG_TYPE, "heater_on"),
    ({"mode": "turbo"}, Reason.OUT_OF_RANGE, "mode"),
    ({"mode": 3}, Reason.WRONG_TYPE, "mode"),
    ({"h2": 1.0}, Reason.UNKNOWN_MEASUREMENT, "h2"),
])
def test_field_level_rejection_keeps_the_other_fields(validate: MessageValidator, values: dict[str, object],
                                                      reason: Reason, field: str) -> None:
    outcome = validate(message(reading(ch4=2.5, **values)))
    assert [(r.reason, r.measurement, r.seq, r.device_id) for r in outcome.rejections] == [
        (reason, field, 1, "tun-c001-gas1")]
    [point] = outcome.readings
    assert point.fields == {"ch4": 2.5}


def test_reading_with_only_bad_fields_gives_no_point(validate: MessageValidator) -> None:
    outcome = validate(message(reading(o2=99.0)))
    assert outcome.readings == []
    assert [r.reason for r in outcome.rejections] == [Reason.OUT_OF_RANGE]


def reasons(outcome: Outcome) -> list[Reason]:
    return [r.reason for r in outcome.rejections]


def seqs(validate: MessageValidator, *readings: dict[str, object]) -> list[int]:
    """The seqs that land, each reading sent in a message of its own."""
    return [r.seq for body in readings for r in validate(message(body)).readings]


def test_a_late_reading_inside_the_window_lands_wherever_it_arrives(validate: MessageValidator) -> None:
    # The minimal case: paho re-sends its unacknowledged 5 after a reconnect, behind 10 and 11.
    landed = seqs(validate, reading(seq=10, ts=NOW - 5000), reading(seq=5, ts=NOW - 10_000),
                  reading(seq=11, ts=NOW - 4000))
    assert landed == [10, 5, 11]
    # A gateway's backlog after its live reading.
    assert seqs(validate, *(reading(seq=s, ts=NOW - 20_000 + s) for s in (6, 7, 8, 9))) == [6, 7, 8, 9]


def test_a_seen_seq_is_a_duplicate_inside_the_window(validate: MessageValidator) -> None:
    assert seqs(validate, reading(seq=5, ts=NOW - 2000), reading(seq=7, ts=NOW - 1000)) == [5, 7]
    assert reasons(validate(message(reading(seq=5, ts=NOW - 2000)))) == [Reason.DUPLICATE_SEQUENCE]
    assert reasons(validate(message(reading(seq=7, ts=NOW - 1000)))) == [Reason.DUPLICATE_SEQUENCE]


def test_a_seq_below_the_window_is_stale() -> None:
    validate = MessageValidator(make_catalog(), Limits(), clock_ms=lambda: NOW, sequence_window=8)
    assert seqs(validate, reading(seq=20, ts=NOW - 1000)) == [20]
    assert seqs(validate, reading(seq=13, ts=NOW - 8000)) == [13]  # 20 - 7: the window's lowest seq
    stale = validate(message(reading(seq=12, ts=NOW - 9000)))
    assert reasons(stale) == [Reason.STALE_SEQUENCE]
    assert stale.rejections[0].detail == ("seq 12 is below the window of the newest 8 seqs (newest 20): too old "
                                          "to tell from a replay")


def test_a_window_as_wide_as_a_long_outage_takes_the_whole_backlog() -> None:
    validate = MessageValidator(make_catalog(), Limits(), clock_ms=lambda: NOW)
    assert seqs(validate, reading(seq=5000, ts=NOW - 1000)) == [5000]
    backlog = [reading(seq=s, ts=NOW - 10_000_000 + s * 1000) for s in range(905, 5000)]  # 4,095 seqs back
    assert len(seqs(validate, *backlog)) == len(backlog)
    assert reasons(validate(message(reading(seq=904, ts=NOW - 9_999_000)))) == [Reason.STALE_SEQUENCE]


def test_device_restart_with_newer_timestamp_starts_a_new_numbering(validate: MessageValidator) -> None:
    assert seqs(validate, reading(seq=900, ts=NOW - 5000), reading(seq=1, ts=NOW - 1000)) == [900, 1]
    assert validate.sequences.restarts == 1
    assert seqs(validate, reading(seq=2, ts=NOW - 900)) == [2]
    # 901 of the old numbering, retransmitted late: from before the restart, it cannot be placed.
    assert reasons(validate(message(reading(seq=901, ts=NOW - 4000)))) == [Reason.STALE_SEQUENCE]
    # A restart inside the window is told from a late reading by its timestamp, newer than all we hold.
    assert seqs(validate, reading(seq=1, ts=NOW - 500)) == [1]
    assert validate.sequences.restarts == 2


def test_a_reading_refused_in_every_field_moves_no_state() -> None:
    from citytelemetry.validate.ratelimit import DeviceRateLimit

    limit = DeviceRateLimit({"tun-c001-gas1": 1.0}, burst=1)
    validate = MessageValidator(make_catalog(), Limits(max_future_s=300), clock_ms=lambda: NOW, rate_limit=limit)
    # A huge seq and a timestamp just inside the future limit, every value out of range.
    poison = validate(message(reading(seq=2**62, ts=NOW + 299_000, o2=99.0)))
    assert (poison.readings, reasons(poison)) == ([], [Reason.OUT_OF_RANGE])
    assert validate.sequences.last_seq("tun-c001-gas1") is None
    assert seqs(validate, reading(seq=1, ts=NOW - 1000)) == [1]  # neither stale nor rate limited


def test_a_new_seq_with_the_timestamp_of_a_stored_reading_is_refused(validate: MessageValidator) -> None:
    assert seqs(validate, reading(seq=1, ts=NOW - 3000), reading(seq=2, ts=NOW - 2000)) == [1, 2]
    stepped_back = validate(message(reading(seq=3, ts=NOW - 3000)))  # e.g. the clock stepped back (NTP)
    assert reasons(stepped_back) == [Reason.DUPLICATE_TIMESTAMP]
    assert stepped_back.rejections[0].seq == 3
    assert seqs(validate, reading(seq=3, ts=NOW - 2500)) == [3]  # the state did not move: 3 is still free


def test_rejection_excerpt_is_bounded_and_printable(validate: MessageValidator) -> None:
    outcome = validate(message(b"\x00\x01" + b"a" * 600, "ct/v1/x"))
    [rejection] = outcome.rejections
    assert len(rejection.excerpt) == 257
    assert rejection.excerpt.startswith("\u2400\u2401aaa")  # controls as their pictures (decode.readable)
    assert rejection.device_id is None


def test_status_birth_and_last_will(validate: MessageValidator) -> None:
    status = "ct/v1/hunnan/tunnel/tun-c001-gas1/status"
    online = validate(message({"state": "online", "ts": NOW - 10}, status))
    offline = validate(message({"state": "offline"}, status))
    bad = validate(message({"state": "sleeping"}, status))
    assert [(r.measurement, r.fields, r.timestamp_ms) for r in online.readings + offline.readings] == [
        ("ct_device_status", {"state": "online", "online": True}, NOW - 10),
        ("ct_device_status", {"state": "offline", "online": False}, NOW),
    ]
    assert [r.reason for r in bad.rejections] == [Reason.BAD_SCHEMA]


def test_rate_limit_counts_device_time_so_a_backlog_passes_and_a_flood_does_not() -> None:
    from citytelemetry.validate.ratelimit import DeviceRateLimit

    limit = DeviceRateLimit({"tun-c001-gas1": 2.0}, burst=5)
    validate = MessageValidator(make_catalog(), Limits(), clock_ms=lambda: NOW, rate_limit=limit)
    # A backlog: 50 readings 10 s apart in device time, arriving all at once, all pass.
    backlog = [validate(message(reading(seq=i, ts=NOW - 600_000 + i * 10_000))) for i in range(1, 51)]
    assert all(o.readings and not o.rejections for o in backlog)
    # A flood: readings 1 ms apart in device time: the burst of 5 passes, then they are refused.
    flood = [validate(message(reading(seq=100 + i, ts=NOW - 1000 + i))) for i in range(10)]
    assert [bool(o.readings) for o in flood] == [True] * 5 + [False] * 5
    assert {r.reason for o in flood for r in o.rejections} == {Reason.RATE_LIMITED}


def test_a_higher_seq_with_an_older_timestamp_lands_until_a_restart_was_seen() -> None:
    tracker = SequenceTracker()
    tracker.accept("d", 10, 10_000)
    assert tracker.check("d", 11, 1_000) is None  # a backfill numbered on: no restart seen, nothing refused
    tracker.accept("d", 11, 1_000)
    tracker.accept("d", 0, 20_000)  # at or below the newest, newer than all: a restart
    reason, _ = tracker.check("d", 12, 15_000) or (None, "")
    assert reason is Reason.STALE_SEQUENCE  # numbered above, timestamped before the restart: the old numbering
