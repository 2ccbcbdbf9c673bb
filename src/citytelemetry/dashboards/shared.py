"""Panels that more than one dashboard shows: KPIs, coverage, completeness, alerts, output totals."""

# ruff: noqa: S608, RUF001 - InfluxQL from schema-checked identifiers, quoted; multiplication and minus signs are panel text

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from citytelemetry.dashboards import influxql as q
from citytelemetry.dashboards.formulas import Ratio
from citytelemetry.dashboards.kpi import KpiSettings
from citytelemetry.dashboards.panels import Query, bargauge, stat, table, timeseries
from citytelemetry.dashboards.units import CRITICAL, OK, WARNING, grafana_unit, steps
from citytelemetry.profiles import Catalog
from citytelemetry.profiles.models import System

SITE = (q.var_match("site"),)


def sum_rows(alias: str) -> list[dict[str, Any]]:
    """Grafana transformations: last value of every series, one field each, then their sum."""
    return [
        {"id": "reduce", "options": {"mode": "seriesToRows", "reducers": ["lastNotNull"], "includeTimeField": False}},
        {"id": "rowsToFields", "options": {}},
        {"id": "calculateField", "options": {"mode": "reduceRow", "reduce": {"reducer": "sum"}, "alias": alias,
                                             "replaceFields": True}},
    ]


def ratio_transformations(ratio: Ratio) -> list[dict[str, Any]]:
    """numerator terms summed / denominator terms summed (1 - that for a complement)."""
    numerator = [f"n{i}" for i in range(len(ratio.numerator))]
    denominator = [f"d{i}" for i in range(len(ratio.denominator))]
    steps_: list[dict[str, Any]] = [
        {"id": "reduce", "options": {"mode": "seriesToRows", "reducers": ["lastNotNull"], "includeTimeField": False}},
        {"id": "rowsToFields", "options": {}},
        {"id": "calculateField", "options": {"mode": "reduceRow", "alias": "numerator",
                                             "reduce": {"reducer": "sum", "include": numerator}}},
        {"id": "calculateField", "options": {"mode": "reduceRow", "alias": "denominator",
                                             "reduce": {"reducer": "sum", "include": denominator}}},
        {"id": "calculateField", "options": {"mode": "binary", "alias": ratio.title,
                                             "binary": {"left": "numerator", "operator": "/", "right": "denominator"},
                                             "replaceFields": not ratio.complement}},
    ]
    if ratio.complement:
        steps_[-1]["options"]["alias"] = "ratio"
        steps_.append({"id": "calculateField", "options": {
            "mode": "binary", "alias": ratio.title, "replaceFields": True,
            "binary": {"left": "1", "operator": "-", "right": "ratio"}}})
    return steps_


def target_steps(target_pct: float | None) -> list[dict[str, Any]]:
    if target_pct is None:
        return steps([], "blue")
    return steps([(target_pct / 100, OK)], CRITICAL)


def kpi_stat(ratio: Ratio) -> Any:
    queries = [Query(q.summed_mean(t.measurement, t.field, SITE, t.coefficient, over_time=False), alias=f"n{i}")
               for i, t in enumerate(ratio.numerator)]
    queries += [Query(q.summed_mean(t.measurement, t.field, SITE, t.coefficient, over_time=False), alias=f"d{i}")
                for i, t in enumerate(ratio.denominator)]
    target = f"Target {ratio.target_pct:g} %. " if ratio.target_pct is not None else ""
    terms = "; ".join(f"{side}{i} = {t.label}: {t.measurement}.{t.field} × {t.coefficient:.6g}"
                      for side, group in (("n", ratio.numerator), ("d", ratio.denominator))
                      for i, t in enumerate(group))
    description = (f"{target}Basis: {ratio.basis} Averaged over the selected range (mean power per device, "
                   f"summed). Terms: {terms}.")
    return stat(ratio.title, description, queries, unit="percentunit", thresholds=target_steps(ratio.target_pct),
                transformations=ratio_transformations(ratio), decimals=1)


def registered(catalog: Catalog, system: System) -> dict[str, int]:
    counts: dict[str, int] = {}
    for device in catalog.devices_of(system):
        counts[device.profile.type] = counts.get(device.profile.type, 0) + 1
    return dict(sorted(counts.items()))


def _window(catalog: Catalog, settings: KpiSettings, measurement: str) -> int:
    interval = catalog.profiles[measurement].reporting_interval_s
    return max(1, round(max(interval * settings.coverage.freshness_intervals, settings.coverage.min_window_s)))


def coverage_stat(catalog: Catalog, settings: KpiSettings, system: System, title: str) -> Any:
    counts = registered(catalog, system)
    total = sum(counts.values())
    queries = [Query(q.reporting_share(m, _window(catalog, settings, m), total, SITE), alias=m) for m in counts]
    queries += [Query(q.offline_share(m, _window(catalog, settings, m), total, SITE), alias=f"{m} offline")
                for m in counts]
    description = (f"Registered {system.value} devices (inventory: {total}) with at least one accepted reading "
                   f"within {settings.coverage.freshness_intervals:g} × their reporting interval (at least "
                   f"{settings.coverage.min_window_s:g} s) and no later last will ('offline' status), ÷ registered "
                   f"devices. Basis: per device, not per node. Target {settings.targets.coverage_pct:g} %.")
    return stat(title, description, queries, unit="percentunit",
                thresholds=target_steps(settings.targets.coverage_pct), transformations=sum_rows("coverage"),
                decimals=1)


def coverage_over_time(catalog: Catalog, settings: KpiSettings, system: System) -> Any:
    counts = registered(catalog, system)
    total = sum(counts.values())
    bucket = max(_window(catalog, settings, m) for m in counts)
    queries = [Query(q.reporting_share_over_time(m, bucket, total, SITE), alias=m) for m in counts]
    description = (f"Share of the {total} registered {system.value} devices with a reading in each "
                   f"{bucket} s window ({settings.coverage.freshness_intervals:g} × the longest reporting interval), "
                   "stacked by device type: the top of the stack is the coverage. Line: target "
                   f"{settings.targets.coverage_pct:g} %.")
    return timeseries("Monitoring coverage over time", description, queries, unit="percentunit",
                      thresholds=steps([(settings.targets.coverage_pct / 100, OK)], WARNING), stacked=True,
                      percent_max=True)


def completeness_bargauge(catalog: Catalog, systems: Sequence[System], title: str) -> Any:
    queries = []
    for system in systems:
        for measurement, devices in registered(catalog, system).items():
            interval = catalog.profiles[measurement].reporting_interval_s
            queries.append(Query(q.completeness(measurement, devices, interval, SITE), alias=measurement))
    description = ("Readings received ÷ readings expected over the selected range, per device type: expected = "
                   "registered devices (inventory) × range ÷ reporting interval (profile). Below 1: missing "
                   "readings or devices; the range should not start before the devices did.")
    return bargauge(title, description, queries, unit="percentunit",
                    thresholds=steps([(0.9, WARNING), (0.98, OK)], CRITICAL), maximum=1)


def completeness_by_device(catalog: Catalog, measurement: str, filters: Sequence[str]) -> Any:
    interval = catalog.profiles[measurement].reporting_interval_s
    return table(f"{measurement}: completeness per device", "Readings received ÷ expected (range ÷ "
                 f"{interval:g} s) per device, lowest first.",
                 [Query(q.completeness_by_device(measurement, interval, filters), table=True)],
                 unit="percentunit", sort_by="completeness")


def firing_alerts_table(system: System | None) -> Any:
    scope = f' AND "system" = {q.string(system.value)}' if system else ""
    query = ('SELECT last("summary") AS "summary", "state", "value", "threshold", "fingerprint" FROM "ct_alerts" '
             f'WHERE $timeFilter AND "site" =~ /^$site$/{scope} '
             'GROUP BY "alertname", "severity", "system", "device"')
    keep = [{"fieldName": "state", "config": {"id": "equal", "options": {"value": "firing"}}}]
    mappings = [{"type": "value", "options": {"critical": {"color": CRITICAL, "index": 0},
                                              "warning": {"color": WARNING, "index": 1}}}]
    return table("Firing alerts", "Alerts whose latest notification in the range (measurement ct_alerts, written "
                 "by the alerting stage) is 'firing'. Resolved ones show as green annotations.",
                 [Query(query, table=True)], mappings=mappings, sort_by="severity",
                 transformations=[{"id": "filterByValue", "options": {"type": "include", "match": "any",
                                                                      "filters": keep}}])


def firing_count(system: System | None, title: str) -> Any:
    scope = f' AND "system" = {q.string(system.value)}' if system else ""
    inner = ('SELECT last("summary") AS "summary", "state" FROM "ct_alerts" WHERE $timeFilter AND '
             f'"site" =~ /^$site$/{scope} GROUP BY "alertname", "device"')
    query = f"SELECT count(\"summary\") AS \"firing\" FROM ({inner}) WHERE \"state\" = 'firing'"
    return stat(title, "Alerts currently firing (latest ct_alerts notification per alert and device is "
                "'firing'); no data = none firing.", [Query(query, alias="firing")],
                thresholds=steps([(1, CRITICAL)], OK), decimals=0)


def output_totals(title: str, refs: Sequence[str], catalog: Catalog, filters: Sequence[str]) -> Any:
    """Stacked total of ``type.field`` rates (e.g. kW), one series per source."""
    queries = []
    units = set()
    for ref in refs:
        measurement, field = ref.split(".", 1)
        units.add(catalog.profiles[measurement].measurements[field].unit)
        queries.append(Query(q.summed_mean(measurement, field, filters), alias=ref))
    unit = grafana_unit(units.pop()) if len(units) == 1 else "none"
    return timeseries(title, "Sum over the selected devices of each source's mean per interval, stacked: "
                      f"{', '.join(refs)} (sources from the KPI settings).", queries, unit=unit, stacked=True)
