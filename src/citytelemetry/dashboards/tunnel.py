"""Utility tunnel: compartment × time maps along the 32 km, states needing attention, then every
tunnel device type (gas, environment, sump and pumps, fans, DTS, fire, access) from its profile."""

# ruff: noqa: S608, RUF001, RUF002 - InfluxQL from schema-checked identifiers, quoted; multiplication and minus signs are panel text

from __future__ import annotations

from typing import Any

from citytelemetry.dashboards import influxql as q
from citytelemetry.dashboards.kpi import KpiSettings
from citytelemetry.dashboards.layout import Layout
from citytelemetry.dashboards.model import DashboardSpec
from citytelemetry.dashboards.panels import Query, table
from citytelemetry.dashboards.sections import Scope, location_heatmaps, system_types, type_section
from citytelemetry.dashboards.units import state_mappings
from citytelemetry.profiles import Catalog
from citytelemetry.profiles.models import DeviceProfile, System, ValueType

SYSTEM = System.TUNNEL


def attention_table(profile: DeviceProfile, scope: Scope) -> Any:
    """Latest state of every enum of the type per device, kept when any is a warning or critical state."""
    enums = {k: m for k, m in profile.measurements.items()
             if m.value_type is ValueType.ENUM and (m.warning_values or m.critical_values)}
    if not enums:
        return None
    columns = ", ".join(f"last({q.ident(k)}) AS {q.ident(k)}" for k in enums)
    query = (f"SELECT {columns} FROM {q.ident(profile.type)} WHERE {q.where(*scope.filters)} "
             f'GROUP BY {q.ident(scope.location_tag)}, "device"')
    keep = [{"fieldName": k, "config": {"id": "equal", "options": {"value": v}}}
            for k, m in enums.items() for v in (*m.critical_values, *m.warning_values)]
    mappings = [mapping for m in enums.values() for mapping in state_mappings(m)]
    return table(f"{profile.type}: states needing attention",
                 f"Latest {', '.join(enums)} per device in the range; only devices with a warning or critical "
                 "state (profile) are listed. Empty = all normal.", [Query(query, table=True)],
                 transformations=[{"id": "filterByValue", "options": {"type": "include", "match": "any",
                                                                      "filters": keep}}],
                 mappings=mappings, sort_by=scope.location_tag)


def build(catalog: Catalog, settings: KpiSettings) -> DashboardSpec:  # noqa: ARG001 - same signature for all
    profiles = system_types(catalog, SYSTEM)
    scope = Scope(tuple(p.type for p in profiles), "compartment")
    layout = Layout()
    layout.row("Compartment × time along the tunnel")
    for profile in profiles:
        for panel in location_heatmaps(profile, scope):
            layout.add(panel, w=12, h=12)
    layout.row("States needing attention (fire, intrusion, pumps, fans, sensors)")
    for profile in profiles:
        panel = attention_table(profile, scope)
        if panel is not None:
            layout.add(panel, w=8, h=8)
    for profile in profiles:
        type_section(layout, profile, scope)
    return DashboardSpec(uid="ct-tunnel", title="citytelemetry / Utility tunnel",
                         description="Per-compartment gas and environment against GB 50838 / GB 51354 / GB/T 50493 "
                                     "levels, water levels and pumps, fans, DTS, fire and intrusion states.",
                         tags=("citytelemetry", "tunnel"), variables=scope.variables("Compartment"),
                         panels=layout.panels, system=SYSTEM.value)
