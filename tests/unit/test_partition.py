from __future__ import annotations

from collections import Counter

import pytest

from citytelemetry.config import PipelineSettings, Settings
from citytelemetry.ingest.partition import Partition, batches, subscription

from .catalog_fixture import make_catalog

IDS = [f"dev-{i:04}" for i in range(3000)]


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
