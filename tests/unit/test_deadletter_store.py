"""The dead-letter store keeps refused messages whole, bounded by size and age; replay re-validates them."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import orjson

from citytelemetry.deadletters import summarize
from citytelemetry.deadletters.entries import EntryFilter, read_entries, select
from citytelemetry.deadletters.replay import land, revalidate
from citytelemetry.deadletters.store import DeadLetterStore
from citytelemetry.profiles import Catalog
from citytelemetry.profiles.models import DeviceProfile
from citytelemetry.records import Reason, Rejection
from citytelemetry.validate import Limits, MessageValidator

from .catalog_fixture import GAS, make_catalog
from .test_hostile_input import NOW, TOPIC

DEVICE = "tun-c001-gas1"


def _dead(reason: Reason = Reason.UNKNOWN_MEASUREMENT, device: str | None = DEVICE, topic: str = TOPIC):  # type: ignore[no-untyped-def]
    return summarize([Rejection(reason=reason, detail="d", topic=topic, excerpt="", device_id=device,
                                measurement="co2", seq=1)])


def _payload(seq: int, ts: int = NOW, **values: object) -> bytes:
    return orjson.dumps({"device": DEVICE, "seq": seq, "ts": ts, "values": values})


def test_entries_round_trip_whole_including_a_payload_that_is_not_utf8(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    store.open()
    store.add_message(_dead(), received_ms=NOW, payload=_payload(1, co2=400.0))
    store.add_message(_dead(Reason.NOT_UTF8, None, "ct/v1/x/tunnel/nobody/telemetry"), received_ms=NOW + 1,
                      payload=b"\xff\xfe{")
    store.add_line(b"ct_rejects,reason=x seq=1i 1", record="deadletter", server_message="type conflict",
                   received_ms=NOW + 2)
    store.close()
    entries = list(read_entries(tmp_path))
    assert [(e.id, e.kind, e.received_ms) for e in entries] == [
        ("1.1", "message", NOW), ("1.2", "message", NOW + 1), ("1.3", "line", NOW + 2)]
    assert entries[0].payload == _payload(1, co2=400.0)
    assert (entries[0].reason, entries[0].reasons, entries[0].device) == (
        "unknown_measurement", {"unknown_measurement": 1}, DEVICE)
    assert entries[1].payload == b"\xff\xfe{"
    assert (entries[2].record, entries[2].line, entries[2].server) == (
        "deadletter", "ct_rejects,reason=x seq=1i 1", "type conflict")
    assert store.stats.entries_written == 3


def test_filters_by_reason_device_time_and_kind(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    store.open()
    store.add_message(_dead(), received_ms=NOW, payload=b"{}")
    store.add_message(_dead(Reason.OUT_OF_RANGE), received_ms=NOW + 10, payload=b"{}")
    store.add_message(_dead(Reason.OUT_OF_RANGE, None), received_ms=NOW + 20, payload=b"{}")
    store.close()
    entries = list(read_entries(tmp_path))
    assert [e.id for e in select(entries, EntryFilter(reason="out_of_range"))] == ["1.2", "1.3"]
    assert [e.id for e in select(entries, EntryFilter(reason="out_of_range", device=DEVICE))] == ["1.2"]
    assert [e.id for e in select(entries, EntryFilter(since_ms=NOW + 10))] == ["1.2", "1.3"]
    assert select(entries, EntryFilter(kind="line")) == []


def test_the_store_is_bounded_by_size_oldest_segments_first(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, max_bytes=400_000, segment_bytes=100_000)
    store.open()
    payload = b'{"x":"' + b"a" * 20_000 + b'"}'
    for i in range(60):
        store.add_message(_dead(), received_ms=NOW + i, payload=payload)
    store.close()
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert on_disk <= 400_000
    kept = [e.received_ms - NOW for e in read_entries(tmp_path)]
    assert kept == list(range(60 - len(kept), 60))  # the newest, in order
    assert len(kept) >= 10
    assert store.stats.segments_pruned >= 8


def test_segments_older_than_max_age_go_at_open(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    store = DeadLetterStore(tmp_path, max_age_s=3600, clock=lambda: clock[0])
    store.open()
    store.add_message(_dead(), received_ms=NOW, payload=b"{}")
    store.close()
    [old] = tmp_path.iterdir()
    os.utime(old, (clock[0] - 7200, clock[0] - 7200))
    store = DeadLetterStore(tmp_path, max_age_s=3600, clock=lambda: clock[0])
    store.open()
    store.add_message(_dead(), received_ms=NOW + 1, payload=b"{}")
    store.close()
    assert [e.id for e in read_entries(tmp_path)] == ["2.1"]


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    store.open()
    store.add_message(_dead(), received_ms=NOW, payload=b"{}")
    store.close()
    with (tmp_path / "dl-000001.jsonl").open("ab") as segment:
        segment.write(b'{"kind": "message", "recei')
    assert [e.id for e in read_entries(tmp_path)] == ["1.1"]


def test_a_failing_disk_is_counted_not_raised(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "gone")
    store.open()
    for segment in (tmp_path / "gone").iterdir():
        segment.unlink()
    (tmp_path / "gone").rmdir()
    (tmp_path / "gone").write_text("a file where the directory was")
    store._close_file()  # as a rotation does: the next append opens a segment
    store.add_message(_dead(), received_ms=NOW, payload=b"{}")
    assert store.stats.write_failures == 1
    assert store.stats.entries_written == 0


class ListWriter:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    async def write(self, lines: Sequence[bytes]) -> None:
        self.lines.extend(lines)

    async def aclose(self) -> None:
        return None


def _with_co2(catalog: Catalog) -> Catalog:
    data = GAS.model_dump(mode="json")
    data["measurements"]["co2"] = {"description": "carbon dioxide", "value_type": "float", "unit": "ppm",
                                   "range": {"min": 0, "max": 10_000}}
    fixed = DeviceProfile.model_validate(data)
    devices = {k: dataclasses.replace(d, profile=fixed) for k, d in catalog.devices.items()}
    return Catalog(profiles={fixed.type: fixed}, devices=devices)


def test_replay_lands_what_the_fixed_profile_accepts_and_reports_the_rest(tmp_path: Path) -> None:
    catalog = make_catalog()
    before = MessageValidator(catalog, Limits(), clock_ms=lambda: NOW)
    store = DeadLetterStore(tmp_path)
    store.open()
    # one timestamp per reading: a new seq at the ts of a stored reading is refused (duplicate_timestamp)
    messages = [_payload(1, NOW - 3000, o2=20.9, co2=410.0), _payload(2, NOW - 2000, co2=99_999.0),
                _payload(3, NOW - 1000, o2=20.7)]
    for seq, payload in enumerate(messages, start=1):
        outcome = before(_inbound(payload))
        if outcome.rejections:
            store.add_message(summarize(outcome.rejections), received_ms=NOW + seq, payload=payload)
    store.add_line(b"m f=1i 1", record="reading", server_message="conflict", received_ms=NOW + 9)
    store.close()
    entries = list(read_entries(tmp_path))
    assert len(entries) == 3  # seq 3 was accepted, nothing to keep

    after = MessageValidator(_with_co2(catalog), Limits(), clock_ms=lambda: NOW)
    report = revalidate(entries, after)
    assert (report.replayed, report.passed) == (2, 1)
    assert len(report.lines) == 1
    assert report.lines[0].startswith(b"tunnel_multigas,")
    assert b"co2=410.0,o2=20.9,seq=1i " in report.lines[0] or b"o2=20.9,co2=410.0,seq=1i " in report.lines[0]
    [(entry, still)] = report.still_refused
    assert (entry.id, still.reason, still.seq) == ("1.2", Reason.OUT_OF_RANGE, 2)
    [(skipped, why)] = report.skipped
    assert skipped.kind == "line"
    assert "reading line" in why

    again = revalidate(entries, MessageValidator(_with_co2(catalog), Limits(), clock_ms=lambda: NOW))
    assert again.lines == report.lines  # the same point key and values: landing twice leaves one point
    writer = ListWriter()
    assert asyncio.run(land(report.lines, writer)) == 1
    assert writer.lines == report.lines


def _inbound(payload: bytes):  # type: ignore[no-untyped-def]
    from .test_hostile_input import message

    return message(payload)
