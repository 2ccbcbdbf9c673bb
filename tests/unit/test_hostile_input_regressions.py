"""Hostile inputs that the first validator got wrong (found by the property tests), kept as regressions:
non-string status states, status timestamps outside the window, seq beyond int64, duplicate JSON keys."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citytelemetry.records import Reason

from .test_hostile_input import (
    DEVICE,
    NOW,
    PROPERTY,
    STATUS_TOPIC,
    TOPIC,
    check_outcome,
    json_values,
    message,
    timestamps,
    validator,
)


@pytest.mark.parametrize("state", [[], {}, ["online"], {"online": True}])
def test_a_status_whose_state_is_not_a_string_is_bad_schema_not_a_crash(state: Any) -> None:
    # validator._status: `state not in STATUS_STATES` raises TypeError (unhashable) for a list or object.
    outcome = validator()(message({"state": state}, STATUS_TOPIC))
    assert [r.reason for r in outcome.rejections] == [Reason.BAD_SCHEMA]


@PROPERTY
@given(body=st.fixed_dictionaries({"state": json_values | st.sampled_from(["online", "offline"])},
                                  optional={"ts": timestamps}) | json_values)
def test_status_messages_never_raise(body: Any) -> None:
    import json

    check_outcome(validator()(message(json.dumps(body, allow_nan=True).encode(), STATUS_TOPIC)))


@pytest.mark.parametrize(("ts", "reason"), [
    (NOW + 10 * 365 * 86_400_000, Reason.TIMESTAMP_IN_FUTURE),
    (2**63 - 1, Reason.TIMESTAMP_IN_FUTURE),
    ("9999-12-31T23:59:59Z", Reason.TIMESTAMP_IN_FUTURE),
    (-(10**17), Reason.TIMESTAMP_TOO_OLD),
    ("0001-01-01T00:00:00+23:59", Reason.TIMESTAMP_TOO_OLD),
])
def test_a_status_timestamp_outside_the_window_is_refused_like_a_readings(ts: Any, reason: Reason) -> None:
    # A birth message stamped in year 9999 would stay the device's last() status for ever, hiding its last will;
    # 2**63-1 ms does not fit InfluxDB's nanosecond time at all.
    outcome = validator()(message({"state": "online", "ts": ts}, STATUS_TOPIC))
    assert [r.reason for r in outcome.rejections] == [reason]
    assert outcome.readings == []


@pytest.mark.parametrize("seq", [2**63, 2**64 - 1])
def test_a_sequence_number_beyond_int64_is_bad_schema(seq: int) -> None:
    # Accepted today: the point's seq field (`...i`) is out of InfluxDB's int64 range, so the write is refused
    # (write_rejected) and the tracker's last seq is poisoned with a value no real device reaches.
    outcome = validator()(message({"device": DEVICE, "seq": seq, "ts": NOW, "values": {"o2": 20.9}}))
    assert [r.reason for r in outcome.rejections] == [Reason.BAD_SCHEMA]


@pytest.mark.parametrize("payload", [
    b'{"device": "tun-c001-gas1", "seq": 1, "ts": %d, "values": {"o2": 500, "o2": 20.9}}' % NOW,
    b'{"device": "someone-else", "device": "tun-c001-gas1", "seq": 1, "ts": %d, "values": {"o2": 20.9}}' % NOW,
    b'{"device": "tun-c001-gas1", "seq": 1, "seq": 2, "ts": %d, "values": {"o2": 20.9}}' % NOW,
])
def test_duplicate_json_keys_are_refused(payload: bytes) -> None:
    # orjson keeps the last of duplicate keys; a gateway, IDS or archive that keeps the first sees another
    # reading than we store (a parser differential). RFC 8259 leaves it undefined: refuse it.
    outcome = validator()(message(payload, TOPIC))
    assert [r.reason for r in outcome.rejections] == [Reason.NOT_JSON]
    assert outcome.readings == []
