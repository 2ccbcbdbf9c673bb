"""The retention tiers of a deployment, from the ``[storage]`` settings: raw, then each rollup tier."""

from __future__ import annotations

from dataclasses import dataclass

from citytelemetry.config import StorageSettings
from citytelemetry.profiles import Catalog
from citytelemetry.storage.durations import seconds, window_ms


@dataclass(frozen=True, slots=True)
class Tier:
    """A rollup tier: the retention policy (2.x: bucket) ``name`` holds ``window`` aggregates."""

    name: str
    window: str
    window_ms: int
    retention: str
    use_above_s: float
    bytes_per_value: float


def rollup_tiers(settings: StorageSettings) -> tuple[Tier, ...]:
    """In window order, shortest first."""
    tiers = (Tier(t.name, t.window, window_ms(t.window), t.retention, seconds(t.use_above), t.bytes_per_value)
             for t in settings.tiers)
    return tuple(sorted(tiers, key=lambda t: t.window_ms))


def tiers_by_device(settings: StorageSettings, catalog: Catalog) -> dict[str, tuple[Tier, ...]]:
    """The tiers each device's readings roll up into (``storage.systems`` narrows them per system)."""
    tiers = rollup_tiers(settings)
    per_system = {system: tuple(t for t in tiers if t.name in names) for system, names in settings.systems.items()}
    return {d.id: per_system.get(d.system.value, tiers) for d in catalog.devices.values()}
