"""Energy station: electrical, heat and cooling output, gas use, KPIs with their basis, CO2, then every
station device type (efficiency, COP, emissions against their limits) from its profile."""

# ruff: noqa: RUF001 - multiplication and minus signs are meant: panel text for operators

from __future__ import annotations

from typing import Any

from citytelemetry.dashboards import influxql as q
from citytelemetry.dashboards.formulas import kpi_ratios
from citytelemetry.dashboards.kpi import KpiSettings
from citytelemetry.dashboards.layout import Layout
from citytelemetry.dashboards.model import DashboardSpec
from citytelemetry.dashboards.panels import Query, timeseries
from citytelemetry.dashboards.sections import Scope, system_types, type_section
from citytelemetry.dashboards.shared import SITE, kpi_stat, output_totals
from citytelemetry.profiles import Catalog
from citytelemetry.profiles.models import System

SYSTEM = System.STATION


def co2_panel(settings: KpiSettings) -> Any:
    factor = settings.factors.gas_co2_kg_per_m3
    queries = []
    for ref in settings.sources.gas:
        measurement, field = ref.split(".", 1)
        queries.append(Query(q.summed_mean(measurement, field, SITE, factor), alias=f"{ref} × {factor:g}"))
    return timeseries("CO2 from natural gas", f"Gas flow (Nm³/h) × {factor:g} kg CO2/m³ (KPI settings), stacked "
                      "by source.", queries, unit="suffix: kg/h", stacked=True)


def build(catalog: Catalog, settings: KpiSettings) -> DashboardSpec:
    profiles = system_types(catalog, SYSTEM)
    scope = Scope(tuple(p.type for p in profiles), "unit")
    filters = scope.filters
    sources = settings.sources
    layout = Layout()
    layout.row("Output and gas use")
    layout.add(output_totals("Electrical output", sources.chp_electricity + sources.renewable_electricity,
                             catalog, filters))
    layout.add(output_totals("Heat output", sources.heat_output, catalog, filters))
    layout.add(output_totals("Cooling output", sources.cooling_output, catalog, filters))
    layout.add(output_totals("Natural gas use", sources.gas, catalog, filters))
    layout.row("KPIs over the selected range")
    for ratio in kpi_ratios(settings, catalog):
        layout.add(kpi_stat(ratio), w=4, h=5)
    layout.add(co2_panel(settings), w=24, h=8)
    for profile in profiles:
        type_section(layout, profile, scope)
    return DashboardSpec(uid="ct-station", title="citytelemetry / Energy station",
                         description="CCHP engines, chillers, boilers, heat pumps, PV, wind and storage: output, "
                                     "gas, efficiency and COP, emissions against their limits.",
                         tags=("citytelemetry", "station"), variables=scope.variables("Unit"),
                         panels=layout.panels, system=SYSTEM.value)
