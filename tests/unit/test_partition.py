from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from citytelemetry.alerts.affinity import member_catalog, split_groups
from citytelemetry.alerts.rulefiles import AlertRuleError, load_rule_files
from citytelemetry.config import PipelineSettings, Settings
from citytelemetry.ingest.partition import Partition, affinity_key, batches, subscription
from citytelemetry.profiles import Catalog, load_catalog

from .catalog_fixture import make_catalog

IDS = [f"dev-{i:04}" for i in range(3000)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")


def test_every_device_has_exactly_one_owner_and_the_shares_are_even() -> None:
    members = [Partition(k, 3) for k in (1, 2, 3)]
    owners = Counter(next(m.member for m in members if m.owns(d)) for d in IDS)
    assert sum(owners.values()) == len(IDS)
    assert all(900 <= n <= 1100 for n in owners.values()), owners
    for device_id in IDS[:50]:
        assert sum(m.owns(device_id) for m in members) == 1


def test_adding_a_member_moves_only_the_devices_it_takes() -> None:
    before, after = Partition(1, 4), Partition(1, 5)
    moved = [d for d in IDS if before.owner(d) != after.owner(d)]
    assert all(after.owner(d) == 5 for d in moved)  # rendezvous: a device moves only to the new member
    assert 450 <= len(moved) <= 750  # about 1/5 of them


def test_a_member_subscribes_to_its_devices_topics_and_drops_the_rest() -> None:
    catalog = make_catalog()
    devices = list(catalog.devices.values())
    subs = [subscription(f"{k}/2", devices, "ct/v1") for k in (1, 2)]
    every = {f"ct/v1/{d.site}/{d.system.value}/{d.id}/{kind}" for d in devices for kind in ("telemetry", "status")}
    assert set(subs[0].filters) | set(subs[1].filters) == every
    assert set(subs[0].filters).isdisjoint(subs[1].filters)
    assert set(subs[0].unsubscribe) == set(subs[1].filters) | {"ct/v1/+/+/+/telemetry", "ct/v1/+/+/+/status"}


def test_batches_of_filters() -> None:
    assert [len(b) for b in batches([str(i) for i in range(450)], 200)] == [200, 200, 50]
    assert batches([]) == []


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1/0", "x/2", "1-2"])
def test_a_bad_partition_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match=r"must be k/n with 1 <= k <= n"):
        Partition.parse(spec)
    with pytest.raises(ValueError):
        PipelineSettings(partition=spec)


def test_a_partition_and_a_shared_group_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        Settings.model_validate({"pipeline": {"partition": "1/2"}, "mqtt": {"shared_group": "g"}})


def test_a_compartment_lands_in_one_member_and_a_device_without_one_by_its_id(shipped: Catalog) -> None:
    members = [Partition.of(f"{k}/3", shipped.devices.values()) for k in (1, 2, 3)]
    owner: dict[tuple[str, str, str], set[int]] = {}
    for d in shipped.devices.values():
        assert sum(m.owns(d.id) for m in members) == 1
        assert all(m.owns(d.id) == m.owns_device(d) for m in members)
        if "compartment" in d.location:
            key = (d.site, d.location["cabin"], d.location["compartment"])
            owner.setdefault(key, set()).add(members[0].owner(d.id))
            assert affinity_key(d) == f"{d.site}/cabin={d.location['cabin']},compartment={d.location['compartment']}"
        else:
            assert affinity_key(d) == d.id
            assert members[0].owner(d.id) == Partition.parse("1/3").owner(d.id)  # as before: by id
    assert len(owner) == 160
    assert all(len(m) == 1 for m in owner.values())


def test_shares_of_the_shipped_inventory_are_even_and_deterministic(shipped: Catalog) -> None:
    devices = list(shipped.devices.values())
    shares = Counter(Partition.of("1/3", devices).owner(d.id) for d in devices)
    again = Counter(Partition.of("2/3", list(reversed(devices))).owner(d.id) for d in devices)
    assert shares == again  # from the inventory alone, whatever the member or the order
    assert sum(shares.values()) == 1637
    # 160 compartments of 8 devices and 357 devices by id: within 10 % of a third each
    assert all(abs(n - 1637 / 3) < 0.1 * 1637 / 3 for n in shares.values()), shares
    by_id = Counter(Partition.of("1/3", devices, ()).owner(d.id) for d in devices)
    assert by_id == Counter(Partition.parse("1/3").owner(d.id) for d in devices)  # partition_by () : bare ids


def test_the_subscription_follows_partition_by(shipped: Catalog) -> None:
    devices = list(shipped.devices.values())
    grouped = subscription("2/3", devices, "ct/v1")
    part = Partition.of("2/3", devices)
    assert grouped.filters == part.filters(devices, "ct/v1")
    assert len(grouped.filters) == 2 * sum(part.owns(d.id) for d in devices)
    assert Partition.parse("2/3").filters(devices, "ct/v1") == grouped.filters  # filters() sees the locations
    by_id = subscription("2/3", devices, "ct/v1", ())
    assert by_id.filters != grouped.filters
    assert len(by_id.filters) == 2 * sum(Partition.parse("2/3").owns(d.id) for d in devices)


def test_group_rules_stay_whole_under_the_default_and_are_refused_when_split(shipped: Catalog) -> None:
    rules = load_rule_files(ROOT / "alert_rules", shipped).rules
    assert split_groups(shipped, rules, ("cabin", "compartment")) == []
    problems = split_groups(shipped, rules, ())  # every device by its id: a compartment spans members
    assert [p.split(":")[0] for p in problems] == ["gas_without_ventilation", "fire_with_fans_running",
                                                  "o2_sensors_disagree"]
    with pytest.raises(AlertRuleError, match=r"gas_without_ventilation: .* groups .* would span members"):
        member_catalog(PipelineSettings(partition="1/3", partition_by=()), shipped, rules)


def test_the_member_catalog_is_its_share(shipped: Catalog) -> None:
    rules = load_rule_files(ROOT / "alert_rules", shipped).rules
    assert member_catalog(PipelineSettings(), shipped, rules) is shipped
    shares = [member_catalog(PipelineSettings(partition=f"{k}/3"), shipped, rules).devices for k in (1, 2, 3)]
    assert sum(len(s) for s in shares) == 1637
    assert set().union(*shares) == set(shipped.devices)
