"""Energy network: monitoring coverage (the 90 % target) now and over time, completeness, node status,
then every network device type (substations, valve wells, feeders, meters) from its profile."""

# ruff: noqa: S608 - InfluxQL, not SQL: identifiers come from the profile schema ([a-z0-9_]) and are quoted

from __future__ import annotations

from typing import Any

from citytelemetry.dashboards import influxql as q
from citytelemetry.dashboards.kpi import KpiSettings
from citytelemetry.dashboards.layout import Layout
from citytelemetry.dashboards.model import DashboardSpec
from citytelemetry.dashboards.panels import Query, table
from citytelemetry.dashboards.sections import Scope, system_types, type_section
from citytelemetry.dashboards.shared import (
    completeness_bargauge,
    completeness_by_device,
    coverage_over_time,
    coverage_stat,
)
from citytelemetry.profiles import Catalog
from citytelemetry.profiles.models import System

SYSTEM = System.NETWORK


def device_status_table(system: System, location_tag: str) -> Any:
    query = ('SELECT last("state") AS "state", last("online") AS "online" FROM "ct_device_status" '
             f'WHERE $timeFilter AND "system" = {q.string(system.value)} AND "site" =~ /^$site$/ '
             f'GROUP BY "device", {q.ident(location_tag)}')
    mappings = [{"type": "value", "options": {"online": {"color": "green", "index": 0},
                                              "offline": {"color": "red", "index": 1}}}]
    return table("Node connection status", "Latest birth / last-will status per device (ct_device_status); "
                 "offline first.", [Query(query, table=True)], mappings=mappings, sort_by="state", descending=True)


def build(catalog: Catalog, settings: KpiSettings) -> DashboardSpec:
    profiles = system_types(catalog, SYSTEM)
    scope = Scope(tuple(p.type for p in profiles), "node")
    layout = Layout()
    layout.row("Monitoring coverage")
    layout.add(coverage_stat(catalog, settings, SYSTEM, "Monitoring coverage now"), w=6, h=8)
    layout.add(coverage_over_time(catalog, settings, SYSTEM), w=18, h=8)
    layout.row("Completeness and node status")
    layout.add(completeness_bargauge(catalog, [SYSTEM], "Completeness by device type"), w=12, h=8)
    layout.add(device_status_table(SYSTEM, "node"), w=12, h=8)
    for profile in profiles:
        layout.add(completeness_by_device(catalog, profile.type, scope.filters), w=8, h=8)
    for profile in profiles:
        type_section(layout, profile, scope)
    return DashboardSpec(uid="ct-network", title="citytelemetry / Energy network",
                         description="Nodes fed by the energy station: coverage against the 90 % target, "
                                     "completeness, node status, feeder voltage and frequency, meters.",
                         tags=("citytelemetry", "network"), variables=scope.variables("Node"),
                         panels=layout.panels, system=SYSTEM.value)
