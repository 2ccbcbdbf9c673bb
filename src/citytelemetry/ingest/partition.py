"""Device affinity for scale-out: member k of n owns a fixed share of the inventory's devices.

With a plain shared subscription the broker hands one device's messages to every member in turn, so
every per-device window, counter and alert is split between members and wrong in each (docs/delivery.md).
Instead, ``pipeline.partition = "k/n"`` makes member k subscribe to exactly its devices' two topics
(explicit filters, no wildcard), so everything kept per device lives in exactly one member.

Ownership is rendezvous hashing (highest random weight) of an affinity key over the member numbers:
deterministic from the inventory alone (no coordination, no shared state), even, and when n changes only
the keys whose highest weight moves change owner (about 1/n of them when a member is added).

The affinity key is the device's site and its ``pipeline.partition_by`` location values (default cabin
and compartment), so every device of one compartment lands in one member and the group rules over a
compartment (gas without ventilation, neighbour spread) see all of it. A device lacking one of those
location keys (network and station devices) is hashed by its own id. Group rules whose group could
still span members are named at start (alerts/affinity.py).

Devices outside the inventory and topics outside the scheme reach no member: no member subscribes to
them. The broker's ACL (docs/security.md) refuses an unknown device's credentials anyway; a plain
subscriber on the wildcard can audit what is published there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from citytelemetry.profiles import RegisteredDevice
from citytelemetry.topics import status_topic, subscriptions, telemetry_topic

_SPEC = re.compile(r"^([1-9][0-9]*)/([1-9][0-9]*)$")
FILTERS_PER_SUBSCRIBE = 200  # topic filters per SUBSCRIBE packet: a few KiB, far below any broker's limit
PARTITION_BY = ("cabin", "compartment")  # the default affinity: one member per tunnel compartment


def _weight(member: int, key: str) -> int:
    digest = hashlib.blake2b(f"{member}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def affinity_key(device: RegisteredDevice, partition_by: Iterable[str] = PARTITION_BY) -> str:
    """What decides the owner: ``site/cabin=…,compartment=…``, or the device id when a key is missing."""
    pairs = []
    for key in partition_by:
        value = device.location.get(key)
        if value is None:
            return device.id
        pairs.append(f"{key}={value}")
    return f"{device.site}/" + ",".join(pairs) if pairs else device.id


@dataclass(frozen=True, slots=True)
class Partition:
    member: int  # 1 … count
    count: int
    # device id -> affinity key (``of``). ``owns(device_id)`` hashes a device not in it by its bare id (it
    # knows no location); ``filters`` and ``owns_device`` see the device, so they use ``partition_by``.
    keys: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    partition_by: tuple[str, ...] = PARTITION_BY

    @classmethod
    def parse(cls, spec: str) -> Partition:
        """``"k/n"`` with 1 <= k <= n; raises ``ValueError`` otherwise. Owners by bare device id until
        ``with_devices`` gives the inventory's affinity keys."""
        match = _SPEC.match(spec)
        if match is None or not 1 <= int(match[1]) <= int(match[2]):
            raise ValueError(f"partition {spec!r} must be k/n with 1 <= k <= n, e.g. 2/8")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def of(cls, spec: str, devices: Iterable[RegisteredDevice], partition_by: Iterable[str] = PARTITION_BY,
           ) -> Partition:
        """Member ``spec`` of the inventory ``devices``: ``owns(device_id)`` follows the affinity keys."""
        return cls.parse(spec).with_devices(devices, partition_by)

    def with_devices(self, devices: Iterable[RegisteredDevice], partition_by: Iterable[str] = PARTITION_BY,
                     ) -> Partition:
        by = tuple(partition_by)
        return Partition(self.member, self.count, {d.id: affinity_key(d, by) for d in devices}, by)

    def __str__(self) -> str:
        return f"{self.member}/{self.count}"

    def owner(self, device_id: str) -> int:
        """The member (1 … count) that owns ``device_id`` (by its affinity key, else its id)."""
        key = self.keys.get(device_id, device_id)
        return max(range(1, self.count + 1), key=lambda member: _weight(member, key))

    def owns(self, device_id: str) -> bool:
        return self.owner(device_id) == self.member

    def owns_device(self, device: RegisteredDevice) -> bool:
        key = self.keys.get(device.id) or affinity_key(device, self.partition_by)
        return max(range(1, self.count + 1), key=lambda member: _weight(member, key)) == self.member

    def filters(self, devices: Iterable[RegisteredDevice], prefix: str) -> list[str]:
        """The telemetry and status topics of the devices this member owns, in inventory order."""
        out = []
        for device in devices:
            if self.owns_device(device):
                out.append(telemetry_topic(device.site, device.system.value, device.id, prefix))
                out.append(status_topic(device.site, device.system.value, device.id, prefix))
        return out

    def foreign_filters(self, devices: Iterable[RegisteredDevice], prefix: str) -> list[str]:
        """The topics of every device another member owns: unsubscribed on a resumed session, since a
        persistent session keeps the subscriptions of an earlier partitioning (or of no partitioning)."""
        out = []
        for device in devices:
            if not self.owns_device(device):
                out.append(telemetry_topic(device.site, device.system.value, device.id, prefix))
                out.append(status_topic(device.site, device.system.value, device.id, prefix))
        return out


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a member subscribes to, and what a resumed session must drop."""

    filters: list[str]
    unsubscribe: list[str]


def subscription(spec: str, devices: Iterable[RegisteredDevice], prefix: str,
                 partition_by: Iterable[str] = PARTITION_BY) -> Subscription:
    """Member ``spec`` ("k/n"): its devices' topics; it drops the others' and the scheme's wildcards."""
    inventory = list(devices)
    part = Partition.of(spec, inventory, partition_by)
    foreign = part.foreign_filters(inventory, prefix) + subscriptions(prefix)
    return Subscription(part.filters(inventory, prefix), foreign)


def batches(filters: list[str], size: int = FILTERS_PER_SUBSCRIBE) -> list[list[str]]:
    return [filters[i:i + size] for i in range(0, len(filters), size)]
