"""Grafana macro substitution, the KPI transformation chain and the KPI formulas, without a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from citytelemetry.dashboards import KpiSettings
from citytelemetry.dashboards.formulas import KpiSourceError, kpi_ratios
from citytelemetry.dashboards.kpi import Sources
from citytelemetry.dashboards.macros import TimeRange, auto_interval, escape_regex, interpolate
from citytelemetry.dashboards.shared import ratio_transformations, sum_rows
from citytelemetry.dashboards.transforms import filter_rows, reduce_fields
from citytelemetry.profiles import load_catalog

ROOT = Path(__file__).resolve().parents[2]
Q = ('SELECT mean("o2") FROM "m" WHERE $timeFilter AND "site" =~ /^$site$/ AND "device" =~ /^$device$/ '
     'AND "device_type" =~ /^$device_type$/ GROUP BY time($__interval) / $__range_s')


def test_relative_range_multi_value_and_all() -> None:
    text = interpolate(Q, variables={"site": ["hunnan"], "device": ["tun-c001.gas1", "b"], "device_type": None},
                       time_range=TimeRange(last="6h"), interval="30s")
    assert text == ('SELECT mean("o2") FROM "m" WHERE time >= now() - 6h AND "site" =~ /^hunnan$/ AND '
                    '"device" =~ /^(tun-c001\\.gas1|b)$/ AND "device_type" =~ /^.*$/ GROUP BY time(30s) / 21600')


def test_absolute_range() -> None:
    text = interpolate("WHERE $timeFilter", variables={}, time_range=TimeRange(None, 1000, 61000), interval="1s")
    assert text == "WHERE time >= 1000ms and time <= 61000ms"
    assert TimeRange(None, 1000, 61000).seconds == 60


def test_grafana_brace_syntax_and_unknown_names_left_alone() -> None:
    text = interpolate("${site} [[site]] $col $tag_device", variables={"site": ["a"]}, time_range=TimeRange(),
                       interval="1m")
    assert text == "a a $col $tag_device"


def test_escape_and_auto_interval() -> None:
    assert escape_regex("a.b(c)/d") == "a\\.b\\(c\\)\\/d"
    assert auto_interval(TimeRange(last="6h")) == "108s"
    assert auto_interval(TimeRange(last="5m")) == "10s"


def test_sum_rows_adds_the_last_values() -> None:
    assert reduce_fields(sum_rows("coverage"), {"a": 0.25, "b": 0.5, "c": None}) == {"coverage": 0.75}


def test_ratio_chain_matches_the_formula() -> None:
    catalog = load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")
    ratios = {r.key: r for r in kpi_ratios(KpiSettings(), catalog)}
    saving = ratios["energy_saving"]
    values = {f"n{i}": float(i + 1) for i in range(len(saving.numerator))}
    values |= {f"d{i}": 10.0 for i in range(len(saving.denominator))}
    expected = 1 - sum(values[f"n{i}"] for i in range(len(saving.numerator))) / (10.0 * len(saving.denominator))
    assert reduce_fields(ratio_transformations(saving), values) == {saving.title: pytest.approx(expected)}
    share = ratios["renewable_share"]
    assert not share.complement
    assert share.target_pct == 15.0
    # Gas counts toward clean energy but not renewable; PV enters with the calorific factor.
    pv = [t for t in share.numerator if t.measurement == "pv_inverter"]
    assert [t.coefficient for t in pv] == [0.1229]
    assert {t.measurement for t in ratios["clean_energy"].numerator} >= {"chp_engine", "gas_boiler"}


def test_kpi_sources_must_exist_in_the_profiles() -> None:
    catalog = load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")
    settings = KpiSettings(sources=Sources(gas=("chp_engine.nothing",)))
    with pytest.raises(KpiSourceError, match=r"sources.gas: 'chp_engine.nothing'"):
        kpi_ratios(settings, catalog)


def test_filter_by_value_keeps_warning_and_critical_rows() -> None:
    steps = [{"id": "filterByValue", "options": {"type": "include", "match": "any", "filters": [
        {"fieldName": "state", "config": {"id": "equal", "options": {"value": "fire"}}}]}}]
    rows = [{"device": "a", "state": "normal"}, {"device": "b", "state": "fire"}]
    assert filter_rows(steps, rows) == [{"device": "b", "state": "fire"}]
