"""The outlet: one line per refused message, bounded per device; refused lines are counted and kept."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from citytelemetry.deadletters import DeadLetterBudget, summarize
from citytelemetry.deadletters.entries import read_entries
from citytelemetry.deadletters.outlet import DeadLetterOutlet
from citytelemetry.deadletters.store import DeadLetterStore
from citytelemetry.records import Reason
from citytelemetry.sink.deadletter import DeadLetterFormatter
from citytelemetry.validate import Limits, MessageValidator
from citytelemetry.validate.ratelimit import DeviceRateLimit

from .catalog_fixture import make_catalog
from .line_ranges import assert_in_range
from .test_hostile_input import NOW, message

CATALOG = make_catalog()
DEVICE = "tun-c001-gas1"


def _junk(seq: int, keys: int = 50) -> bytes:
    return orjson.dumps({"device": DEVICE, "seq": seq, "ts": NOW + seq,
                         "values": {f"x{i}": 1 for i in range(keys)}})


def test_a_flood_of_refused_messages_writes_the_burst_then_counts_the_rest(tmp_path: Path) -> None:
    now = [0.0]
    store = DeadLetterStore(tmp_path)
    store.open()
    notices: list[tuple[str, bytes]] = []
    limit = DeviceRateLimit({DEVICE: 0.1}, burst=200)
    outlet = DeadLetterOutlet(DeadLetterFormatter(CATALOG, "i1"), DeadLetterBudget(rate_per_s=1, burst=5,
                              clock=lambda: now[0]), store=store, publish_notice=lambda r, n: notices.append((r, n)),
                              charge=limit.charge)
    validator = MessageValidator(CATALOG, Limits(), clock_ms=lambda: NOW + 1000)
    lines = []
    for seq in range(1, 21):
        inbound = message(_junk(seq))
        line = outlet(inbound, summarize(validator(inbound).rejections))
        if line is not None:
            lines.append(line)
    assert len(lines) == 5
    assert len(notices) == 5
    assert dict(outlet.suppressed) == {"unknown_measurement": 15}
    assert limit.tokens(DEVICE) == -200  # one token per refusal, down to a debt of the burst
    now[0] += 1.0
    inbound = message(_junk(21))
    line = outlet(inbound, summarize(validator(inbound).rejections))
    assert line is not None
    point = assert_in_range(line)
    assert point.fields["suppressed"] == "15i"
    assert point.fields["count"] == "50i"
    assert json.loads(notices[-1][1])["suppressed"] == 15
    store.close()
    assert [json.loads(e.payload)["seq"] for e in read_entries(tmp_path)] == [1, 2, 3, 4, 5, 21]


def test_rate_limited_refusals_are_not_charged_again() -> None:
    charged: list[tuple[str, float]] = []
    outlet = DeadLetterOutlet(DeadLetterFormatter(CATALOG, "i1"), DeadLetterBudget(),
                              charge=lambda device, cost: charged.append((device, cost)))
    from citytelemetry.records import Rejection

    limited = Rejection(reason=Reason.RATE_LIMITED, detail="", topic="t", excerpt="", device_id=DEVICE)
    assert outlet(message(b"{}"), summarize([limited, limited])) is not None
    assert charged == []
    wrong = Rejection(reason=Reason.WRONG_TYPE, detail="", topic="t", excerpt="", device_id=DEVICE)
    outlet(message(b"{}"), summarize([limited, wrong, wrong]))
    assert charged == [(DEVICE, 2.0)]
