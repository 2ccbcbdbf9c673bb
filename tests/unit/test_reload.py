"""What a reload changes, computed before anything is swapped: catalog diffs and the alert rules' swap."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import yaml

from citytelemetry.alerts.evaluator import AlertEngine
from citytelemetry.alerts.model import Alert
from citytelemetry.alerts.rulefiles import load_rule_files
from citytelemetry.config import AlertSettings, HttpSettings, PipelineSettings, Settings
from citytelemetry.contracts import InboundMessage
from citytelemetry.ingest.broker import BrokerSource
from citytelemetry.ingest.member_topics import TopicChange, topic_change
from citytelemetry.ingest.partition import Partition
from citytelemetry.profiles import Catalog, load_catalog
from citytelemetry.profiles.diff import diff_catalogs
from citytelemetry.records import Reading
from citytelemetry.run import Pipeline, build_pipeline
from citytelemetry.testing import CountingDelivery

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_780_000_000_000
GAS = "tun-c001-gas1"


def _district(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "device_profiles", tmp_path / "district", ignore=shutil.ignore_patterns("*.md"))
    return tmp_path / "district"


def _edit(path: Path, change: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _load(district: Path) -> Catalog:
    return load_catalog(district / "types", district / "inventory")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")


def test_diff_names_added_removed_and_changed_devices_and_profiles(tmp_path: Path, catalog: Catalog) -> None:
    district = _district(tmp_path)
    tunnel = district / "inventory" / "tunnel.yaml"

    def change(data: dict[str, Any]) -> None:
        first = data["devices"][0]
        data["devices"].append({**first, "id": "tun-c999-gas1"})
        data["devices"] = [d for d in data["devices"] if d["id"] != "tun-c002-gas1"]

    _edit(tunnel, change)
    _edit(district / "types" / "tunnel_fan.yaml", lambda d: d.update(description="Jet fan, edited"))
    diff = diff_catalogs(catalog, _load(district))
    fans = sorted(d.id for d in catalog.devices.values() if d.profile.type == "tunnel_fan")
    assert (diff.devices_added, diff.devices_removed, diff.devices_changed) == (
        ("tun-c999-gas1",), ("tun-c002-gas1",), tuple(fans))
    assert (diff.profiles_added, diff.profiles_removed, diff.profiles_changed) == ((), (), ("tunnel_fan",))
    assert diff.summary().startswith("devices added 1 (tun-c999-gas1); devices removed 1 (tun-c002-gas1); "
                                     f"devices changed {len(fans)} (")
    assert diff_catalogs(catalog, catalog).empty


class Engine:
    def __init__(self, catalog: Catalog, tmp: Path) -> None:
        self.now_s = T0 / 1000
        self.log: list[tuple[str, str, str]] = []
        settings = Settings(alerts=AlertSettings(rules_dir=ROOT / "alert_rules", state_file=tmp / "state.json"))
        self.engine = AlertEngine(settings, catalog, lambda _lines: None, clock=lambda: self.now_s,
                                  on_transition=self._record)
        self.catalog = catalog
        self.seq = 0

    def _record(self, alert: Alert) -> None:
        self.log.append((alert.state.value, alert.rule.name, alert.rule.severity.value))

    def read(self, at_s: float, ch4: float) -> None:
        device = self.catalog.devices[GAS]
        self.seq += 1
        ts = T0 + round(at_s * 1000)
        self.now_s = ts / 1000
        self.engine.observe([Reading(device.profile.type, GAS, device.tags, {"ch4": ch4}, ts, self.seq)])

    def reload(self, catalog: Catalog) -> list[str]:
        changes, swap = self.engine.prepare_rules(catalog, load_rule_files(ROOT / "alert_rules", catalog))
        swap()
        self.catalog = catalog
        return changes.changed


def test_a_firing_alert_stays_open_across_a_reload_and_a_changed_level_applies_to_the_next_reading(
        tmp_path: Path, catalog: Catalog) -> None:
    engine = Engine(catalog, tmp_path)
    engine.read(0, 12.0)
    engine.read(30, 12.0)
    assert engine.log == [("firing", "tunnel_multigas_ch4_high", "warning")]
    district = _district(tmp_path)
    _edit(district / "types" / "tunnel_multigas.yaml",
          lambda d: d["measurements"]["ch4"]["thresholds"]["high"].update(warning=15))
    changed = engine.reload(_load(district))
    assert "tunnel_multigas_ch4_high/warning" in changed
    assert [a.rule.name for a in engine.engine.firing()] == ["tunnel_multigas_ch4_high"]  # kept, not re-announced
    assert len(engine.log) == 1
    engine.read(40, 12.0)  # below the new level's clear point (15 back 10 % towards typical 2: 13.7)
    assert engine.log[-1] == ("resolved", "tunnel_multigas_ch4_high", "warning")


def test_an_unchanged_reload_keeps_pending_alerts_and_their_start(tmp_path: Path, catalog: Catalog) -> None:
    engine = Engine(catalog, tmp_path)
    engine.read(0, 12.0)  # pending: fires at 30 s if still high
    assert engine.reload(catalog) == []
    engine.read(30, 12.0)
    assert engine.log == [("firing", "tunnel_multigas_ch4_high", "warning")]


def test_a_firing_alert_of_a_removed_device_is_resolved(tmp_path: Path, catalog: Catalog) -> None:
    engine = Engine(catalog, tmp_path)
    engine.read(0, 12.0)
    engine.read(30, 12.0)
    district = _district(tmp_path)
    _edit(district / "inventory" / "tunnel.yaml",
          lambda d: d.update(devices=[x for x in d["devices"] if x["id"] != GAS]))
    queued = len(engine.engine.delivery.queue)
    engine.reload(_load(district))
    assert engine.engine.firing() == []
    notice = engine.engine.delivery.queue[-1]
    assert len(engine.engine.delivery.queue) == queued + 1
    assert notice.ends_ms is not None
    assert notice.labels["alertname"] == "tunnel_multigas_ch4_high"
    assert "closed at reload" in notice.annotations["summary"]


NOW_MS = time.time_ns() // 1_000_000


def _message(device: str, seq: int, site: str = "hunnan", system: str = "tunnel") -> InboundMessage:
    now = NOW_MS + seq  # a replay of a seq is the same reading: the same timestamp (a later one is a restart)
    body = orjson.dumps({"device": device, "seq": seq, "ts": now, "values": {"o2": 20.9}})
    return InboundMessage(f"ct/v1/{site}/{system}/{device}/telemetry", body, now, CountingDelivery())


def _pipeline(district: Path) -> Pipeline:
    settings = Settings(http=HttpSettings(port=0), pipeline=PipelineSettings(
        spool_dir=None, profiles_dir=district / "types", inventory_dir=district / "inventory"))
    return build_pipeline(settings, _load(district))


async def test_a_reload_swaps_the_inventory_and_keeps_every_remaining_devices_state(tmp_path: Path) -> None:
    district = _district(tmp_path)
    pipeline = _pipeline(district)
    handle = pipeline.handler
    for device in (GAS, "tun-c002-gas1"):
        lines, on_durable = handle(_message(device, 7))
        on_durable()
    assert dict(pipeline.stats.rejections) == {}
    completeness = pipeline.completeness.by_system()

    def change(data: dict[str, Any]) -> None:
        data["devices"] = [d for d in data["devices"] if d["id"] != "tun-c002-gas1"]
        data["devices"].append({"id": "tun-c999-gas1", "type": "tunnel_multigas",
                                "location": {"cabin": "gas", "compartment": "c999", "km": "31.9"}})

    _edit(district / "inventory" / "tunnel.yaml", change)
    report = await pipeline.reload()
    assert report.lines() == ["reloaded: devices added 1 (tun-c999-gas1); devices removed 1 (tun-c002-gas1)",
                              "alert rules: not read (alerting is off)"]
    assert pipeline.stats.reloads_applied == 1
    assert pipeline.stats.catalog_devices == 1637
    assert pipeline.completeness.by_system() == completeness  # counts kept
    handle(_message(GAS, 7))  # the sequence window survived the swap: a replay is still a duplicate
    handle(_message("tun-c002-gas1", 8))  # removed: refused from the next message
    lines, _ = handle(_message("tun-c999-gas1", 1))  # added: accepted from the next message
    assert dict(pipeline.stats.rejections) == {"duplicate_sequence": 1, "unknown_device": 1}
    assert lines[0].startswith(b"tunnel_multigas,")


async def test_a_broken_file_changes_nothing_and_is_counted(tmp_path: Path) -> None:
    district = _district(tmp_path)
    pipeline = _pipeline(district)
    validator = pipeline.handler.validator
    gas = district / "types" / "tunnel_multigas.yaml"
    _edit(gas, lambda d: d["measurements"]["o2"]["range"].update(min="low"))
    _edit(district / "inventory" / "tunnel.yaml", lambda d: d["devices"].append(
        {"id": "tun-c999-gas1", "type": "tunnel_multigas", "location": {"cabin": "gas", "compartment": "c999"}}))
    report = await pipeline.reload()
    assert not report.applied
    assert report.lines()[:2] == ["reload refused, nothing changed:",
                                  f"  {gas}: measurements.o2.range.min: Input should be a valid number"]
    assert (pipeline.stats.reloads_applied, pipeline.stats.reloads_refused) == (0, 1)
    assert pipeline.handler.validator is validator
    pipeline.handler(_message("tun-c999-gas1", 1))
    assert dict(pipeline.stats.rejections) == {"unknown_device": 1}


async def test_the_file_watch_reloads_a_change_once_it_holds_still(tmp_path: Path) -> None:
    district = _district(tmp_path)
    pipeline = _pipeline(district)
    reloader = pipeline._parts.reloader  # the watch runs in Pipeline.run; here on its own
    assert reloader is not None
    watch = asyncio.create_task(reloader.watch(0.05))
    try:
        _edit(district / "inventory" / "tunnel.yaml", lambda d: d["devices"].append(
            {"id": "tun-c999-gas1", "type": "tunnel_multigas", "location": {"cabin": "gas", "compartment": "c999"}}))
        deadline = time.monotonic() + 60
        while pipeline.stats.reloads_applied == 0:
            assert time.monotonic() < deadline, "no reload after the inventory changed"
            await asyncio.sleep(0.05)
        assert "tun-c999-gas1" in pipeline.catalog.devices
        await asyncio.sleep(0.3)  # nothing changed since: no second reload
        assert (pipeline.stats.reloads_applied, pipeline.stats.reloads_refused) == (1, 0)
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)


# -- a partitioned member's subscriptions follow the inventory (ingest/member_topics.py) ------------------
def test_the_topic_change_subscribes_what_is_new_and_unsubscribes_what_is_gone() -> None:
    assert topic_change(["a", "b", "c"], ["b", "d", "a", "e"]) == TopicChange(("d", "e"), ("c",))
    assert topic_change(["a"], ["a"]).empty


class FakeSource:
    """The two calls ``MemberTopics.follow`` makes, recorded; ``refuse`` answers as an ACL would."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.requests: list[tuple[str, list[str]]] = []
        self.refuse = refuse

    async def subscribe(self, topic_filters: list[str], *, timeout_s: float | None = None) -> list[tuple[str, str]]:
        assert timeout_s is not None  # a live request is bounded
        self.requests.append(("subscribe", topic_filters))
        return [(f, "NOT_AUTHORIZED") for f in topic_filters if f in self.refuse]

    async def unsubscribe(self, topic_filters: list[str], *, timeout_s: float | None = None) -> list[tuple[str, str]]:
        assert timeout_s is not None
        self.requests.append(("unsubscribe", topic_filters))
        return []


def _topics_of(device: str, prefix: str = "ct/v1") -> list[str]:
    return [f"{prefix}/hunnan/tunnel/{device}/telemetry", f"{prefix}/hunnan/tunnel/{device}/status"]


def _partitioned(district: Path, spec: str = "1/1") -> Pipeline:
    settings = Settings(http=HttpSettings(port=0), pipeline=PipelineSettings(
        spool_dir=None, profiles_dir=district / "types", inventory_dir=district / "inventory", partition=spec))
    return build_pipeline(settings, _load(district))


def _swap_devices(district: Path, *, add: str | None = None, remove: str | None = None) -> None:
    def change(data: dict[str, Any]) -> None:
        data["devices"] = [d for d in data["devices"] if d["id"] != remove]
        if add is not None:
            data["devices"].append({"id": add, "type": "tunnel_multigas",  # tun-c950-gas1: compartment c950
                                    "location": {"cabin": "gas", "compartment": add.split("-")[1], "km": "31.9"}})

    _edit(district / "inventory" / "tunnel.yaml", change)


async def test_a_reload_subscribes_an_added_device_and_unsubscribes_a_removed_one(tmp_path: Path) -> None:
    district = _district(tmp_path)
    pipeline = _partitioned(district)
    topics = pipeline._parts.topics
    assert topics is not None
    at_start = topics.filters
    assert len(at_start) == 2 * 1637  # member 1 of 1 owns every device
    source = FakeSource()
    topics.attach(cast("BrokerSource", source), at_start)
    _swap_devices(district, add="tun-c999-gas1", remove="tun-c002-gas1")
    report = await pipeline.reload()
    assert source.requests == [("subscribe", _topics_of("tun-c999-gas1")),
                               ("unsubscribe", sorted(_topics_of("tun-c002-gas1")))]
    assert report.lines()[-1] == "subscriptions: subscribed 2 topics, unsubscribed 2 topics"
    assert report.as_json()["subscriptions"] == {
        "subscribed": _topics_of("tun-c999-gas1"), "unsubscribed": sorted(_topics_of("tun-c002-gas1")),
        "refused": [], "connected": True, "error": None}
    # the next (re)connect: the new set, and a resumed session drops the removed device's topics too
    assert topics.filters == [t for t in at_start if "tun-c002-gas1" not in t] + _topics_of("tun-c999-gas1")
    assert set(_topics_of("tun-c002-gas1")) <= set(topics.unsubscribe)
    assert not topics.behind
    assert (await pipeline.reload()).lines()[-1] == "subscriptions: unchanged"
    assert len(source.requests) == 2


async def test_a_member_subscribes_only_to_the_added_devices_it_owns(tmp_path: Path) -> None:
    district = _district(tmp_path)
    pipeline = _partitioned(district, "2/2")
    topics = pipeline._parts.topics
    assert topics is not None
    source = FakeSource()
    topics.attach(cast("BrokerSource", source), topics.filters)
    candidates = [f"tun-c{n}-gas1" for n in range(900, 1000)]  # not in the inventory
    # Owned by the compartment (pipeline.partition_by), which _swap_devices takes from the id.
    member = Partition(2, 2, {d: f"hunnan/cabin=gas,compartment={d.split('-')[1]}" for d in candidates})
    mine = next(d for d in candidates if member.owns(d))
    theirs = next(d for d in candidates if not member.owns(d))
    _swap_devices(district, add=mine)
    _swap_devices(district, add=theirs)
    await pipeline.reload()
    assert source.requests == [("subscribe", _topics_of(mine))]
    assert set(_topics_of(theirs)) <= set(topics.unsubscribe)  # another member's: dropped if a session holds it


async def test_a_refused_subscription_is_reported_counted_and_left_out_of_the_next_connect(tmp_path: Path) -> None:
    district = _district(tmp_path)
    pipeline = _partitioned(district)
    topics = pipeline._parts.topics
    assert topics is not None
    telemetry = _topics_of("tun-c999-gas1")[0]
    topics.attach(cast("BrokerSource", FakeSource(refuse=frozenset({telemetry}))), topics.filters)
    _swap_devices(district, add="tun-c999-gas1")
    report = await pipeline.reload()
    assert report.lines()[-2:] == [
        "subscriptions: subscribed 1 topic, refused 1 topic",
        (f"warning: the broker refused the subscription to {telemetry} (NOT_AUTHORIZED): its messages reach no "
         "member; allow it (ACL) and reload")]
    assert pipeline.stats.subscriptions_refused == 1
    assert telemetry not in topics.filters  # or every reconnect would fail on it
    assert _topics_of("tun-c999-gas1")[1] in topics.filters
    again = FakeSource()
    topics.attach(cast("BrokerSource", again), topics.filters)
    await pipeline.reload()  # nothing changed on disk: the refused topic is asked for again
    assert again.requests == [("subscribe", [telemetry])]


async def test_a_reload_while_disconnected_changes_the_set_the_next_connection_subscribes_to(tmp_path: Path) -> None:
    district = _district(tmp_path)
    pipeline = _partitioned(district)
    topics = pipeline._parts.topics
    assert topics is not None
    opened_with = topics.filters  # a connection being opened meanwhile subscribed to the old set
    _swap_devices(district, add="tun-c999-gas1")
    report = await pipeline.reload()
    assert report.lines()[-1] == "subscriptions: not connected now; the next connection subscribes to the new set"
    assert topics.filters[-2:] == _topics_of("tun-c999-gas1")
    source = FakeSource()
    topics.attach(cast("BrokerSource", source), opened_with)
    assert topics.behind  # Pipeline._consume catches up beside the pump
    assert (await topics.follow()).subscribed == tuple(_topics_of("tun-c999-gas1"))
    assert source.requests == [("subscribe", _topics_of("tun-c999-gas1"))]
