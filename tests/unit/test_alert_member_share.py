"""Partitioned members compile the alert rules over their own share: a healthy stream raises nothing.

Before, each member's coverage counted the other members' devices as due and never heard (about 1/3
coverage with three members) and its completeness expected every device's readings of the site.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from citytelemetry.alerts.evaluator import AlertEngine
from citytelemetry.alerts.model import Alert
from citytelemetry.alerts.rulefiles import load_rule_files
from citytelemetry.alerts.rules import CompletenessRule, CoverageRule
from citytelemetry.config import AlertSettings, PipelineSettings, Settings
from citytelemetry.ingest.partition import Partition
from citytelemetry.profiles import Catalog, load_catalog
from citytelemetry.records import Reading

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_780_000_000_000
MEMBERS = 3
SPAN_S = 900  # past completeness's 600-s window plus its 120-s for


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")


class Member:
    def __init__(self, catalog: Catalog, tmp: Path, partition: str | None) -> None:
        self.now_s = T0 / 1000
        self.fired: list[tuple[str, str, str]] = []
        settings = Settings(alerts=AlertSettings(rules_dir=ROOT / "alert_rules", state_file=tmp / "state.json"),
                            pipeline=PipelineSettings(partition=partition, spool_dir=None, deadletter_dir=None,
                                                      checkpoint_file=None))
        self.engine = AlertEngine(settings, catalog, lambda _: None, clock=lambda: self.now_s,
                                  on_transition=self._record)

    def _record(self, alert: Alert) -> None:
        self.fired.append((alert.state.value, alert.rule.name, alert.subject.key))


def healthy_run(catalog: Catalog, members: list[Member], devices: list[list[str]], *, start_s: int = 0,
                end_s: int = SPAN_S, exchange: bool = True) -> None:
    """Every device of ``devices[i]`` reports to ``members[i]`` on its interval; a tick every 5 s of event
    time (the fake wall clock in step), after which the members hand each other their reports."""
    seq = 0
    for t in range(start_s, end_s, 5):
        for member, own in zip(members, devices, strict=True):
            for device_id in own:
                device = catalog.devices[device_id]
                if t % round(device.profile.reporting_interval_s) < 5:
                    seq += 1
                    member.now_s = (T0 + t * 1000) / 1000
                    member.engine.observe([Reading(device.profile.type, device_id, device.tags, {}, T0 + t * 1000,
                                                   seq)])
        for member in members:
            member.now_s = (T0 + t * 1000 + 4000) / 1000
            member.engine.tick()
        if exchange:
            reports = [m.engine.site.report(m.engine.clock.mark_ms) for m in members if m.engine.site is not None]
            for member in members:
                for report in reports:
                    assert member.engine.site is not None
                    member.engine.site.receive(report)


def shares(catalog: Catalog) -> list[list[str]]:
    parts = [Partition.of(f"{k}/{MEMBERS}", catalog.devices.values()) for k in range(1, MEMBERS + 1)]
    return [[d for d in catalog.devices if p.owns(d)] for p in parts]


def three(catalog: Catalog, tmp: Path) -> list[Member]:
    return [Member(catalog, tmp / f"m{k}", f"{k}/{MEMBERS}") for k in range(1, MEMBERS + 1)]


def test_three_members_on_their_shares_raise_nothing(catalog: Catalog, tmp_path: Path) -> None:
    members, owned = three(catalog, tmp_path), shares(catalog)
    for member, own in zip(members, owned, strict=True):
        assert {s for s in member.engine.ruleset.subjects if s in catalog.devices} == set(own)
    healthy_run(catalog, members, owned)
    assert [m.fired for m in members] == [[], [], []]
    assert sum(m.engine.readings for m in members) > 10 * len(catalog.devices)


def test_one_members_network_devices_silent_fire_the_site_figure_in_every_member(
        catalog: Catalog, tmp_path: Path) -> None:
    members, owned = three(catalog, tmp_path), shares(catalog)
    network = sum(catalog.devices[d].system.value == "network" for d in catalog.devices)
    # silent from 300 s to 900 s: past 3 x their interval only the 60-s devices (the 300-s and 900-s ones
    # are still within 900 s and 2,700 s)
    uncovered = sum(1 for d in owned[2] if catalog.devices[d].system.value == "network"
                    and catalog.devices[d].profile.reporting_interval_s == 60)
    assert (network, uncovered) == (340, 54)
    healthy_run(catalog, members, owned, end_s=300)
    quiet = [owned[0], owned[1], [d for d in owned[2] if catalog.devices[d].system.value != "network"]]
    healthy_run(catalog, members, quiet, start_s=300, end_s=900)
    for member in members:
        coverage = [a for a in member.engine.firing() if a.rule.name == "network_coverage_low"]
        assert len(coverage) == 1
        covered, due = network - uncovered, network
        assert coverage[0].detail == f"{covered} of {due} devices over 3 of the members"
        assert coverage[0].value == pytest.approx(100 * covered / due)
    assert [m.engine.site.writes_history() for m in members if m.engine.site] == [True, False, False]
    for member in members:  # their readings missing from the window too, in every member's figure
        assert sorted(a.rule.name for a in member.engine.firing() if a.subject.key == "hunnan/network") == [
            "data_completeness_low", "network_coverage_low"]
    offline = {a.subject.key for a in members[2].engine.firing() if a.rule.name == "device_offline"}
    assert len(offline) == uncovered  # and each silent device, by its owner (54 of 114: not a mass silence)
    healthy_run(catalog, members, owned, start_s=900, end_s=1000)
    for member in members:  # reporting again: coverage resolves at once, completeness once the window refills
        assert [a.rule.name for a in member.engine.firing()] == ["data_completeness_low"]
    assert [(s, n) for s, n, _ in members[0].fired if n == "network_coverage_low"] == [
        ("firing", "network_coverage_low"), ("resolved", "network_coverage_low")]


def test_an_unpartitioned_engine_fed_one_share_fires_the_site_rules(catalog: Catalog, tmp_path: Path) -> None:
    """What a member did before: its rules over the whole catalog, its readings a third of it."""
    member = Member(catalog, tmp_path, None)
    healthy_run(catalog, [member], shares(catalog)[:1])
    fired = {(name, subject) for state, name, subject in member.fired if state == "firing"}
    assert ("network_coverage_low", "hunnan/network") in fired
    assert ("data_completeness_low", "hunnan/tunnel") in fired


def test_a_member_gone_counts_as_its_whole_share_unmonitored(catalog: Catalog, tmp_path: Path) -> None:
    members, owned = three(catalog, tmp_path), shares(catalog)
    healthy_run(catalog, members, owned, end_s=300)
    healthy_run(catalog, members[:2], owned[:2], start_s=300, end_s=420)  # member 3 killed: no reports
    gone = sum(catalog.devices[d].system.value == "network" for d in owned[2])
    assert gone == 114
    for member in members[:2]:
        coverage = [a for a in member.engine.firing() if a.rule.name == "network_coverage_low"]
        assert [a.detail for a in coverage] == [
            f"226 of 340 devices over 2 of the members; member 3/3 silent for 120 s: its {gone} counted unmonitored"]


def test_a_reload_keeps_the_site_sum(catalog: Catalog, tmp_path: Path) -> None:
    members, owned = three(catalog, tmp_path), shares(catalog)
    healthy_run(catalog, members, owned, end_s=300)
    engine = members[0].engine
    assert engine.site is not None
    before = dict(engine.site.local)
    assert set(before) == {"network_coverage_low/critical"}  # completeness judges after its 600-s window
    _changes, swap = engine.prepare_rules(catalog, load_rule_files(ROOT / "alert_rules", catalog))
    swap()
    site_rules = [r for r in engine.ruleset.time_rules if isinstance(r, CoverageRule | CompletenessRule)]
    assert [r.site for r in site_rules] == [engine.site, engine.site]
    assert engine.site.local == before  # the next report still carries our figures
    healthy_run(catalog, members, owned, start_s=300, end_s=900)
    assert [m.fired for m in members] == [[], [], []]
