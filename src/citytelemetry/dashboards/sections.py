"""Panels generated from a device profile alone: a new device type gets its section with no code change.

Per measurement of the type: numbers as worst-high / mean / worst-low bands with the profile's units and
threshold lines; cumulative registers as a summed consumption rate; states (enums, booleans) as a state
timeline per device with the profile's warning and critical colours.
"""

# ruff: noqa: RUF001 - multiplication and minus signs are meant: panel text for operators

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from citytelemetry.dashboards import influxql as q
from citytelemetry.dashboards.layout import Layout
from citytelemetry.dashboards.model import Variable, tag_values
from citytelemetry.dashboards.panels import Query, heatmap, state_timeline, timeseries
from citytelemetry.dashboards.units import describe, grafana_unit, state_mappings, threshold_steps
from citytelemetry.profiles import Catalog
from citytelemetry.profiles.models import DeviceProfile, Measurement, System, ValueType

NUMERIC = (ValueType.FLOAT, ValueType.INT)


def system_types(catalog: Catalog, system: System) -> list[DeviceProfile]:
    """The system's device types, by name: the order of their sections."""
    return [catalog.profiles[name] for name in sorted(catalog.profiles) if catalog.profiles[name].system is system]


@dataclass(frozen=True, slots=True)
class Scope:
    """The template variables of a system dashboard and the tag the location variable filters."""

    measurements: tuple[str, ...]
    location_tag: str

    @property
    def filters(self) -> tuple[str, ...]:
        return (q.var_match("site"), q.var_match("device_type"), q.var_match("device"),
                q.var_match(self.location_tag))

    def variables(self, location_label: str) -> list[Variable]:
        source = q.measurements_regex(self.measurements)
        site = q.var_match("site")
        return [
            Variable("site", "Site", tag_values("site", source)),
            Variable("device_type", "Device type", tag_values("device_type", source, site)),
            Variable(self.location_tag, location_label, tag_values(self.location_tag, source, site)),
            Variable("device", "Device", tag_values("device", source, site, q.var_match("device_type"),
                                                    q.var_match(self.location_tag))),
        ]


def numeric_panel(profile: DeviceProfile, key: str, m: Measurement, filters: Sequence[str]) -> Any:
    if m.monotonic:
        return timeseries(f"{m.description}: consumption rate", describe(key, m) + " Shown: the summed "
                          "increase of the register per hour over the selected devices.",
                          [Query(q.counter_rate(profile.type, key, filters), alias=f"{key} per hour")],
                          unit=grafana_unit(f"{m.unit}/h" if m.unit != "kWh" else "kW"))
    return timeseries(m.description, describe(key, m) + " Lines: highest, mean and lowest of the selected "
                      "devices per interval; threshold lines from the profile.",
                      [Query(text, alias=name) for text, name in zip(q.aggregate_band(profile.type, key, filters),
                                                                     ("max", "mean", "min"), strict=True)],
                      unit=grafana_unit(m.unit), thresholds=threshold_steps(m))


def state_panel(profile: DeviceProfile, key: str, m: Measurement, filters: Sequence[str]) -> Any:
    return state_timeline(f"{m.description} per device", describe(key, m) + " One row per selected device "
                          "(pick devices with the Device variable when there are many).",
                          [Query(q.last_by(profile.type, key, filters, "device"), alias="$tag_device")],
                          state_mappings(m))


def type_section(layout: Layout, profile: DeviceProfile, scope: Scope) -> None:
    """A row per device type, then one panel per measurement in profile order."""
    filters = scope.filters
    layout.row(f"{profile.type}: {profile.description}")
    for key, m in profile.measurements.items():
        if m.value_type in NUMERIC:
            layout.add(numeric_panel(profile, key, m, filters), w=8, h=8)
        else:
            layout.add(state_panel(profile, key, m, filters), w=8, h=8)


def primary_measurement(profile: DeviceProfile) -> tuple[str, Measurement] | None:
    """The first numeric measurement with an alarm level (what a compartment map should colour)."""
    for key, m in profile.measurements.items():
        if m.value_type in NUMERIC and not m.monotonic and m.thresholds and (m.thresholds.high or m.thresholds.low):
            return key, m
    return None


def unsafe_sides(m: Measurement) -> tuple[str, ...]:
    """The directions the profile's levels call dangerous: a heatmap cell must show the worst reading that
    way (``min`` for O2 deficiency, ``max`` for methane), or the aggregate hides it."""
    if m.thresholds is None:
        return ()
    return tuple(side for side, level in (("low", m.thresholds.low), ("high", m.thresholds.high)) if level)


def location_heatmaps(profile: DeviceProfile, scope: Scope) -> list[Any]:
    """One heatmap per dangerous direction of the primary measurement (both for O2 and temperature)."""
    found = primary_measurement(profile)
    if found is None:
        return []
    key, m = found
    tag = scope.location_tag
    panels = []
    for side in unsafe_sides(m):
        worst, selector = ("lowest", "min") if side == "low" else ("highest", "max")
        panels.append(heatmap(
            f"{profile.type}: {m.description}, {worst} per {tag} × time",
            describe(key, m) + f" Rows: {tag}s in order along the tunnel; colour: the {worst} value in the interval "
            f"({selector}(), the direction of its {side} alarm levels).",
            [Query(q.extreme_by(selector, profile.type, key, scope.filters, tag), alias=f"$tag_{tag}")],
            unit=grafana_unit(m.unit)))
    return panels
