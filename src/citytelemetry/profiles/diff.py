"""What changed between two catalogs: the words of a reload's report, and which device state to keep."""

from __future__ import annotations

from dataclasses import dataclass

from citytelemetry.profiles.catalog import Catalog


@dataclass(slots=True, frozen=True)
class CatalogDiff:
    devices_added: tuple[str, ...]
    devices_removed: tuple[str, ...]
    devices_changed: tuple[str, ...]  # same id, another profile, site, system or location
    profiles_added: tuple[str, ...]
    profiles_removed: tuple[str, ...]
    profiles_changed: tuple[str, ...]  # thresholds, ranges, measurements ... (their devices count as changed)

    @property
    def empty(self) -> bool:
        return not any((self.devices_added, self.devices_removed, self.devices_changed, self.profiles_added,
                        self.profiles_removed, self.profiles_changed))

    def summary(self) -> str:
        parts = [f"{label} {len(names)} ({_some(names)})" for label, names in (
            ("devices added", self.devices_added), ("devices removed", self.devices_removed),
            ("devices changed", self.devices_changed), ("profiles added", self.profiles_added),
            ("profiles removed", self.profiles_removed), ("profiles changed", self.profiles_changed),
        ) if names]
        return "; ".join(parts) or "no device or profile changed"


def _some(names: tuple[str, ...], limit: int = 5) -> str:
    more = f", ... {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def diff_catalogs(old: Catalog, new: Catalog) -> CatalogDiff:
    kept = old.devices.keys() & new.devices.keys()
    kept_profiles = old.profiles.keys() & new.profiles.keys()
    return CatalogDiff(
        devices_added=tuple(sorted(new.devices.keys() - old.devices.keys())),
        devices_removed=tuple(sorted(old.devices.keys() - new.devices.keys())),
        devices_changed=tuple(sorted(d for d in kept if old.devices[d] != new.devices[d])),
        profiles_added=tuple(sorted(new.profiles.keys() - old.profiles.keys())),
        profiles_removed=tuple(sorted(old.profiles.keys() - new.profiles.keys())),
        profiles_changed=tuple(sorted(p for p in kept_profiles if old.profiles[p] != new.profiles[p])),
    )
