"""One dead letter per refused message, bounded whatever the message holds; a budget per device."""

from __future__ import annotations

import json

import orjson
import pytest

from citytelemetry.deadletters import DeadLetterBudget, summarize
from citytelemetry.deadletters.summary import MAX_DETAIL_CHARS
from citytelemetry.records import Reason, Rejection
from citytelemetry.sink.deadletter import DeadLetterFormatter
from citytelemetry.validate import Limits, MessageValidator
from citytelemetry.validate.ratelimit import DeviceRateLimit

from .catalog_fixture import make_catalog
from .line_ranges import assert_in_range
from .test_hostile_input import NOW, TOPIC, message, unquote

CATALOG = make_catalog()
DEVICE = "tun-c001-gas1"


def _unknown_keys(count: int) -> dict[str, object]:
    values: dict[str, object] = {f"k{i:05d}": 1.0 for i in range(count)}
    values["o2"] = 20.9
    return {"device": DEVICE, "seq": 1, "ts": NOW, "values": values}


def test_five_thousand_unknown_keys_are_one_dead_letter_with_their_count() -> None:
    validator = MessageValidator(CATALOG, Limits(max_payload_bytes=100_000), clock_ms=lambda: NOW)
    payload = orjson.dumps(_unknown_keys(5000))
    assert 55_000 < len(payload) < 65_536
    outcome = validator(message(payload))
    assert len(outcome.rejections) == 5000  # the validator's list stays per field
    assert [r.fields for r in outcome.readings] == [{"o2": 20.9}]
    dead = summarize(outcome.rejections)
    assert (dead.reason, dead.total) == (Reason.UNKNOWN_MEASUREMENT, 5000)
    assert dead.reasons_text == "unknown_measurement=5000"
    assert dead.field_names == tuple(f"k{i:05d}" for i in range(8))
    assert dead.detail.endswith("; ... and 4995 more")
    assert dead.detail.count("is not a measurement") == 5
    line = DeadLetterFormatter(CATALOG, "ct-test").line(dead, NOW)
    assert len(line) < 1500
    point = assert_in_range(line)
    assert point.tags["reason"] == "unknown_measurement"
    assert point.tags["device"] == DEVICE
    assert point.fields["count"] == "5000i"
    assert point.fields["seq"] == "1i"
    assert unquote(point.fields["field"]) == ",".join(dead.field_names)


def test_the_most_frequent_reason_is_the_tag_and_every_count_is_kept() -> None:
    def rejection(reason: Reason, field: str | None = None) -> Rejection:
        return Rejection(reason=reason, detail=f"{reason.value} {field}", topic=TOPIC, excerpt="{}",
                         device_id=DEVICE, measurement=field, seq=7)

    dead = summarize([rejection(Reason.OUT_OF_RANGE, "o2"), rejection(Reason.WRONG_TYPE, "ch4"),
                      rejection(Reason.WRONG_TYPE, "mode")])
    assert dead.reason is Reason.WRONG_TYPE
    assert dead.reasons_text == "wrong_type=2,out_of_range=1"
    assert dead.detail == "out_of_range o2; wrong_type ch4; wrong_type mode"
    notice = json.loads(DeadLetterFormatter(CATALOG, "i1").notice(dead, NOW, suppressed=3))
    assert notice == {"reason": "wrong_type", "count": 3, "reasons": {"wrong_type": 2, "out_of_range": 1},
                      "detail": dead.detail, "topic": TOPIC, "device": DEVICE, "seq": 7, "field": "o2",
                      "fields": ["o2", "ch4", "mode"], "excerpt": "{}", "received_ms": NOW, "instance": "i1",
                      "suppressed": 3}


@pytest.mark.parametrize("seq", [2**63, 2**64 + 5, 10**30, -(2**63) - 1])
def test_a_sequence_number_beyond_64_bits_is_kept_as_text_not_refused(seq: int) -> None:
    dead = summarize([Rejection(reason=Reason.BAD_SCHEMA, detail="seq must be ...", topic=TOPIC, excerpt="",
                                device_id=DEVICE, seq=seq)])
    formatter = DeadLetterFormatter(CATALOG, "i1")
    point = assert_in_range(formatter.line(dead, NOW))
    assert "seq" not in point.fields
    assert unquote(point.fields["seq_text"]) == str(seq)
    assert json.loads(formatter.notice(dead, NOW))["seq"] == str(seq)


def test_a_huge_detail_topic_and_field_name_stay_bounded() -> None:
    dead = summarize([Rejection(reason=Reason.UNKNOWN_MEASUREMENT, detail="d" * 100_000, topic="t" * 100_000,
                                excerpt="e" * 300, measurement="m" * 100_000)])
    point = assert_in_range(DeadLetterFormatter(CATALOG, "i1").line(dead, NOW, suppressed=2))
    assert len(unquote(point.fields["detail"])) == MAX_DETAIL_CHARS
    assert len(unquote(point.fields["topic"])) == 256
    assert len(unquote(point.fields["field"])) == 256
    assert point.fields["suppressed"] == "2i"
    assert set(point.tags) == {"instance", "reason"}  # not in the inventory: no device tags


def test_the_budget_admits_a_burst_then_the_rate_and_counts_what_it_suppresses() -> None:
    now = [100.0]
    budget = DeadLetterBudget(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [budget.admit(DEVICE) for _ in range(5)] == [True, True, True, False, False]
    assert budget.admit("other") is True  # its own bucket
    assert budget.suppressed_total == 2
    now[0] += 0.5  # one token back
    assert budget.admit(DEVICE) is True
    assert budget.take_suppressed(DEVICE) == 2
    assert budget.take_suppressed(DEVICE) == 0
    assert [budget.admit(None) for _ in range(4)] == [True, True, True, False]  # every unknown device shares one
    assert budget.take_suppressed(None) == 1


def test_refusals_charge_the_device_rate_budget_down_to_a_bounded_debt() -> None:
    limit = DeviceRateLimit({DEVICE: 1.0}, burst=5)
    limit.charge(DEVICE, 3)  # before its first reading: no device time yet
    assert limit(DEVICE, now=1000.0) is True  # 2 left, 1 taken
    assert limit.tokens(DEVICE) == 1.0
    limit.charge(DEVICE, 100)
    assert limit.tokens(DEVICE) == -5.0  # the debt is bounded by the burst
    assert limit(DEVICE, now=1005.0) is False  # 5 s at 1/s pays the debt back to 0
    assert limit(DEVICE, now=1006.0) is True
