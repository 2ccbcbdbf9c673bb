"""Partitioned members compile the alert rules over their own share: a healthy stream raises nothing.

Before, each member's coverage counted the other members' devices as due and never heard (about 1/3
coverage with three members) and its completeness expected every device's readings of the site.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from citytelemetry.alerts.evaluator import AlertEngine
from citytelemetry.alerts.model import Alert
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


def healthy_run(catalog: Catalog, member: Member, devices: list[str]) -> None:
    """Every device of ``devices`` reports on its interval for SPAN_S; a tick every 5 s of event time."""
    seq = 0
    for t in range(0, SPAN_S, 5):
        for device_id in devices:
            device = catalog.devices[device_id]
            interval = round(device.profile.reporting_interval_s)
            if t % interval < 5:
                seq += 1
                member.now_s = (T0 + t * 1000) / 1000
                member.engine.observe([Reading(device.profile.type, device_id, device.tags, {}, T0 + t * 1000, seq)])
        member.now_s = (T0 + t * 1000 + 4000) / 1000
        member.engine.tick()
    assert member.engine.readings == seq > 10 * len(devices)


def test_three_members_on_their_shares_raise_nothing(catalog: Catalog, tmp_path: Path) -> None:
    for k in range(1, MEMBERS + 1):
        spec = f"{k}/{MEMBERS}"
        member = Member(catalog, tmp_path / spec.replace("/", "-"), spec)
        part = Partition.of(spec, catalog.devices.values())
        owned = [d for d in catalog.devices if part.owns(d)]
        assert set(member.engine.ruleset.presence.last_seen) == set()
        assert {s for s in member.engine.ruleset.subjects if s in catalog.devices} == set(owned)
        healthy_run(catalog, member, owned)
        assert member.fired == [], spec


def test_an_unpartitioned_engine_fed_one_share_fires_the_site_rules(catalog: Catalog, tmp_path: Path) -> None:
    """What a member did before: its rules over the whole catalog, its readings a third of it."""
    member = Member(catalog, tmp_path, None)
    part = Partition.of(f"1/{MEMBERS}", catalog.devices.values())
    healthy_run(catalog, member, [d for d in catalog.devices if part.owns(d)])
    fired = {(name, subject) for state, name, subject in member.fired if state == "firing"}
    assert ("network_coverage_low", "hunnan/network") in fired
    assert ("data_completeness_low", "hunnan/tunnel") in fired
