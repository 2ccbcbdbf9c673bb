"""The storage plan: points per day and disk per tier, from the inventory and the profiles' cadences.

Every device sends one reading (one point, its fields plus ``seq``) per ``reporting_interval_s``; event
messages on a state change come on top, so raw figures are a floor. A rollup tier holds, per device and
window with data, one point per aggregate measurement: ``86400 / max(window, interval)`` windows a day.
Disk = stored field values x bytes per value, measured on influxd (docs/storage.md), over a year and over
the tier's retention (what the tier holds once it is full).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from citytelemetry.config import StorageSettings
from citytelemetry.profiles import Catalog
from citytelemetry.storage.durations import seconds
from citytelemetry.storage.schema import MeasurementRollup
from citytelemetry.storage.tiers import rollup_tiers, tiers_by_device

DAY_S = 86_400.0
YEAR_DAYS = 365.0
RAW = "raw"


@dataclass(slots=True)
class TierLoad:
    """One tier's load: points and field values per day, by system."""

    tier: str
    window: str
    retention: str
    bytes_per_value: float
    points_per_day: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    values_per_day: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def total_points_per_day(self) -> float:
        return sum(self.points_per_day.values())

    @property
    def total_values_per_day(self) -> float:
        return sum(self.values_per_day.values())

    @property
    def bytes_per_year(self) -> float:
        return self.total_values_per_day * YEAR_DAYS * self.bytes_per_value

    @property
    def bytes_held(self) -> float:
        """Disk once the tier is full: ``retention`` of data (infinite for INF: grows a year per year)."""
        days = seconds(self.retention) / DAY_S
        return math.inf if math.isinf(days) else self.total_values_per_day * days * self.bytes_per_value


def storage_plan(settings: StorageSettings, catalog: Catalog,
                 schema: Mapping[str, MeasurementRollup]) -> list[TierLoad]:
    raw = TierLoad(RAW, "", settings.raw_retention, settings.raw_bytes_per_value)
    tiers = {t.name: TierLoad(t.name, t.window, t.retention, t.bytes_per_value)
             for t in rollup_tiers(settings)}
    for device_id, device_tiers in tiers_by_device(settings, catalog).items():
        device = catalog.devices[device_id]
        interval = device.profile.reporting_interval_s
        rollup = schema[device.profile.type]
        system = device.system.value
        raw.points_per_day[system] += DAY_S / interval
        raw.values_per_day[system] += DAY_S / interval * len(rollup.fields)
        aggregates = {a for f in rollup.fields for a in f.aggregates}
        for tier in device_tiers:
            windows = DAY_S / max(tier.window_ms / 1000, interval)
            tiers[tier.name].points_per_day[system] += windows * len(aggregates)
            tiers[tier.name].values_per_day[system] += windows * len(rollup.columns())
    return [raw, *tiers.values()]


def _size(n_bytes: float) -> str:
    if math.isinf(n_bytes):
        return "grows"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes / 1e3:.1f} kB"


def render_plan(loads: list[TierLoad], devices: int) -> list[str]:
    systems = sorted({s for load in loads for s in load.points_per_day})
    header = f"{'tier':<12}{'window':>7}{'keeps':>7}" + "".join(f"{s + ' pts/d':>18}" for s in systems)
    header += f"{'points/day':>14}{'values/day':>14}{'disk/year':>11}{'disk held':>11}"
    per_value = ", ".join(f"{load.tier} {load.bytes_per_value:g}" for load in loads)
    lines = [f"{devices} devices; disk = stored values x measured bytes per value ({per_value}; docs/storage.md)",
             header]
    for load in loads:
        per_system = "".join(f"{load.points_per_day.get(s, 0.0):>18,.0f}" for s in systems)
        lines.append(f"{load.tier:<12}{load.window or '-':>7}{load.retention:>7}{per_system}"
                     f"{load.total_points_per_day:>14,.0f}{load.total_values_per_day:>14,.0f}"
                     f"{_size(load.bytes_per_year):>11}{_size(load.bytes_held):>11}")
    return lines
