"""Device affinity for scale-out: member k of n owns a fixed share of the inventory's devices.

With a plain shared subscription the broker hands one device's messages to every member in turn, so
every per-device window, counter and alert is split between members and wrong in each (docs/delivery.md).
Instead, ``pipeline.partition = "k/n"`` makes member k subscribe to exactly its devices' two topics
(explicit filters, no wildcard), so everything kept per device lives in exactly one member.

Ownership is rendezvous hashing (highest random weight) of the device id over the member numbers:
deterministic from the id alone (no coordination, no shared state), even, and when n changes only the
devices whose highest weight moves change owner (about 1/n of them when a member is added).

Devices outside the inventory and topics outside the scheme reach no member: no member subscribes to
them. The broker's ACL (docs/security.md) refuses an unknown device's credentials anyway; a plain
subscriber on the wildcard can audit what is published there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from citytelemetry.profiles import RegisteredDevice
from citytelemetry.topics import status_topic, subscriptions, telemetry_topic

_SPEC = re.compile(r"^([1-9][0-9]*)/([1-9][0-9]*)$")
FILTERS_PER_SUBSCRIBE = 200  # topic filters per SUBSCRIBE packet: a few KiB, far below any broker's limit


def _weight(member: int, device_id: str) -> int:
    digest = hashlib.blake2b(f"{member}/{device_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class Partition:
    member: int  # 1 … count
    count: int

    @classmethod
    def parse(cls, spec: str) -> Partition:
        """``"k/n"`` with 1 <= k <= n; raises ``ValueError`` otherwise."""
        match = _SPEC.match(spec)
        if match is None or not 1 <= int(match[1]) <= int(match[2]):
            raise ValueError(f"partition {spec!r} must be k/n with 1 <= k <= n, e.g. 2/8")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.member}/{self.count}"

    def owner(self, device_id: str) -> int:
        """The member (1 … count) that owns ``device_id``."""
        return max(range(1, self.count + 1), key=lambda member: _weight(member, device_id))

    def owns(self, device_id: str) -> bool:
        return self.owner(device_id) == self.member

    def filters(self, devices: Iterable[RegisteredDevice], prefix: str) -> list[str]:
        """The telemetry and status topics of the devices this member owns, in inventory order."""
        out = []
        for device in devices:
            if self.owns(device.id):
                out.append(telemetry_topic(device.site, device.system.value, device.id, prefix))
                out.append(status_topic(device.site, device.system.value, device.id, prefix))
        return out

    def foreign_filters(self, devices: Iterable[RegisteredDevice], prefix: str) -> list[str]:
        """The topics of every device another member owns: unsubscribed on a resumed session, since a
        persistent session keeps the subscriptions of an earlier partitioning (or of no partitioning)."""
        out = []
        for device in devices:
            if not self.owns(device.id):
                out.append(telemetry_topic(device.site, device.system.value, device.id, prefix))
                out.append(status_topic(device.site, device.system.value, device.id, prefix))
        return out


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a member subscribes to, and what a resumed session must drop."""

    filters: list[str]
    unsubscribe: list[str]


def subscription(spec: str, devices: Iterable[RegisteredDevice], prefix: str) -> Subscription:
    """Member ``spec`` ("k/n"): its devices' topics; it drops the others' and the scheme's wildcards."""
    part = Partition.parse(spec)
    inventory = list(devices)
    foreign = part.foreign_filters(inventory, prefix) + subscriptions(prefix)
    return Subscription(part.filters(inventory, prefix), foreign)


def batches(filters: list[str], size: int = FILTERS_PER_SUBSCRIBE) -> list[list[str]]:
    return [filters[i:i + size] for i in range(0, len(filters), size)]
