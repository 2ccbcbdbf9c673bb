"""District overview: health per system, firing alerts, data completeness, eco-park KPIs vs targets."""



from __future__ import annotations

from typing import Any

from citytelemetry.dashboards import influxql as q
from citytelemetry.dashboards.formulas import kpi_ratios
from citytelemetry.dashboards.kpi import KpiSettings
from citytelemetry.dashboards.layout import Layout
from citytelemetry.dashboards.model import DashboardSpec, Variable, tag_values
from citytelemetry.dashboards.panels import Query, bargauge
from citytelemetry.dashboards.shared import (
    completeness_bargauge,
    coverage_stat,
    firing_alerts_table,
    firing_count,
    kpi_stat,
)
from citytelemetry.dashboards.units import CRITICAL, OK, WARNING, steps
from citytelemetry.profiles import Catalog
from citytelemetry.profiles.models import System


def rejects_by_system() -> Any:
    query = ('SELECT sum("count") AS "rejected" FROM "ct_rejects" WHERE $timeFilter AND "site" =~ /^$site$/ '
             'GROUP BY "system"')
    return bargauge("Rejected readings by system", "Rejections stored in ct_rejects in the range, by the system "
                    "of the device (empty: rejected before the device was known, e.g. unknown_device).",
                    [Query(query, alias="$tag_system")], unit="short", maximum=None,
                    thresholds=steps([(1, WARNING), (100, CRITICAL)], OK))


def build(catalog: Catalog, settings: KpiSettings) -> DashboardSpec:
    systems = [s for s in System if catalog.devices_of(s)]
    layout = Layout()
    layout.row("Health per system")
    for system in systems:
        layout.add(coverage_stat(catalog, settings, system, f"{system.value}: devices reporting"), w=4, h=5)
        layout.add(firing_count(system, f"{system.value}: alerts firing"), w=4, h=5)
    layout.row("Firing alerts")
    layout.add(firing_alerts_table(None), w=24, h=8)
    layout.row("Data completeness")
    layout.add(completeness_bargauge(catalog, systems, "Completeness by device type"), w=12, h=14)
    layout.add(rejects_by_system(), w=12, h=14)
    layout.row("Eco-park KPIs vs targets")
    coverage_system = System(settings.coverage.system)
    layout.add(coverage_stat(catalog, settings, coverage_system, f"Monitoring coverage ({coverage_system.value})"),
               w=4, h=6)
    for ratio in kpi_ratios(settings, catalog):
        layout.add(kpi_stat(ratio), w=4, h=6)
    site = Variable("site", "Site", tag_values("site", q.measurements_regex(sorted(catalog.profiles))))
    return DashboardSpec(uid="ct-overview", title="citytelemetry / District overview",
                         description="Health of the tunnel, the energy station and the energy network; alerts; "
                                     "completeness; eco-park KPIs against the published targets.",
                         tags=("citytelemetry", "overview"), variables=[site], panels=layout.panels)
