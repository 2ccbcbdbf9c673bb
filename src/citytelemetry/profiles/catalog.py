"""The loaded, cross-checked set of profiles and devices that the pipeline runs against."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from citytelemetry.profiles.models import DeviceProfile, System


@dataclass(slots=True, frozen=True)
class RegisteredDevice:
    """A device of the inventory joined with its profile; ``tags`` are its InfluxDB tags."""

    id: str
    site: str
    system: System
    profile: DeviceProfile
    location: Mapping[str, str]
    tags: tuple[tuple[str, str], ...]


@dataclass(slots=True, frozen=True)
class Catalog:
    profiles: dict[str, DeviceProfile]
    devices: dict[str, RegisteredDevice]

    def devices_of(self, system: System) -> list[RegisteredDevice]:
        return [d for d in self.devices.values() if d.system is system]


def device_tags(site: str, system: System, profile: DeviceProfile, device_id: str,
                location: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Tags sorted by key, as the line protocol prefers; every value comes from the inventory."""
    tags = {"site": site, "system": system.value, "device": device_id, "device_type": profile.type}
    tags.update(location)
    return tuple(sorted(tags.items()))
