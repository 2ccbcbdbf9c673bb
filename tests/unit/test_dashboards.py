"""Generated dashboards: Grafana's model, determinism, profile-driven panels, committed files current."""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from citytelemetry.dashboards import KpiSettings, build_dashboards, load_kpi_settings
from citytelemetry.dashboards.kpi import KpiError
from citytelemetry.dashboards.model import dump
from citytelemetry.dashboards.panels import DATASOURCE_UID
from citytelemetry.profiles import Catalog, load_catalog

ROOT = Path(__file__).resolve().parents[2]
TYPES, INVENTORY = ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory"
PANEL_TYPES = {"row", "timeseries", "stat", "state-timeline", "table", "heatmap", "text", "gauge", "bargauge"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(TYPES, INVENTORY)


@pytest.fixture(scope="module")
def dashboards(catalog: Catalog) -> dict[str, dict[str, Any]]:
    return build_dashboards(catalog, KpiSettings())


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_five_dashboards_with_stable_uids(dashboards: dict[str, dict[str, Any]]) -> None:
    assert list(dashboards) == ["ct-overview", "ct-tunnel", "ct-station", "ct-network", "ct-pipeline"]


def test_grafana_dashboard_model(dashboards: dict[str, dict[str, Any]]) -> None:
    for uid, d in dashboards.items():
        assert d["schemaVersion"] >= 36, uid
        assert d["uid"] == uid
        assert d["id"] is None
        assert d["title"]
        assert {"from", "to"} <= set(d["time"])
        for panel in _panels(d):
            assert panel["type"] in PANEL_TYPES, (uid, panel["title"], panel["type"])
            assert panel["type"] not in {"graph", "singlestat"}
            assert isinstance(panel["id"], int)
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
            if panel["type"] != "row":
                assert panel["targets"], (uid, panel["title"])
                assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
                assert all(t["rawQuery"] and t["query"].startswith(("SELECT", "SHOW")) for t in panel["targets"])


def test_unique_panel_ids(dashboards: dict[str, dict[str, Any]]) -> None:
    for uid, d in dashboards.items():
        ids = [p["id"] for p in _panels(d)]
        assert len(ids) == len(set(ids)), uid


def test_no_overlapping_panels(dashboards: dict[str, dict[str, Any]]) -> None:
    for uid, d in dashboards.items():
        cells: dict[tuple[int, int], str] = {}
        for panel in d["panels"]:
            g = panel["gridPos"]
            assert g["x"] >= 0
            assert g["x"] + g["w"] <= 24, (uid, panel["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{uid}: {panel['title']!r} overlaps {cells[(x, y)]!r}"
                    cells[(x, y)] = panel["title"]


def _datasources(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            else:
                yield from _datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasources(item)


def test_every_datasource_reference_resolves_to_the_provisioned_one(dashboards: dict[str, dict[str, Any]]) -> None:
    provisioned = (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "influxdb-v1.yaml").read_text()
    assert f"uid: {DATASOURCE_UID}" in provisioned
    for uid, d in dashboards.items():
        refs = [ref for ref in _datasources(d) if ref is not None]
        assert refs, uid
        assert all(ref == {"type": "influxdb", "uid": DATASOURCE_UID} for ref in refs), uid
        rows = [p for p in d["panels"] if p["type"] == "row"]
        assert all("datasource" not in r for r in rows)


def test_template_variables_used_by_queries_are_defined(dashboards: dict[str, dict[str, Any]]) -> None:
    builtins = {"timeFilter", "__interval", "__range_s"}
    for uid, d in dashboards.items():
        defined = {v["name"] for v in d["templating"]["list"]}
        if uid != "ct-overview":
            assert "site" in defined
        for panel in _panels(d):
            for target in panel.get("targets", []):
                used = set(re.findall(r"\$(\w+)", target["query"]))
                assert used <= defined | builtins, (uid, panel["title"], used - defined - builtins)


def test_system_dashboards_have_the_four_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    location = {"ct-tunnel": "compartment", "ct-station": "unit", "ct-network": "node"}
    for uid, tag in location.items():
        names = [v["name"] for v in dashboards[uid]["templating"]["list"]]
        assert names == ["site", "device_type", tag, "device", "rp"]  # rp: the storage tier (hidden)
        for v in dashboards[uid]["templating"]["list"][:-1]:
            assert (v["multi"], v["includeAll"], v["allValue"]) == (True, True, ".*")


def test_units_and_threshold_lines_come_from_the_profiles(dashboards: dict[str, dict[str, Any]],
                                                          catalog: Catalog) -> None:
    [o2] = [p for p in _panels(dashboards["ct-tunnel"]) if p["title"] == "Oxygen concentration"]
    steps = o2["fieldConfig"]["defaults"]["thresholds"]["steps"]
    thresholds = catalog.profiles["tunnel_multigas"].measurements["o2"].thresholds
    assert thresholds is not None
    assert [s["value"] for s in steps] == [None, 18, 19.5, 22, 23.5]
    assert [s["color"] for s in steps] == ["red", "orange", "green", "orange", "red"]
    assert o2["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line+area"
    assert o2["fieldConfig"]["defaults"]["unit"] == "suffix: %vol"
    [nox] = [p for p in _panels(dashboards["ct-station"]) if p["title"].startswith("NOx in the exhaust")]
    assert nox["fieldConfig"]["defaults"]["unit"] == "conmgm3"
    assert "TA Luft" in nox["description"]


def test_alert_annotations_on_every_dashboard(dashboards: dict[str, dict[str, Any]]) -> None:
    for d in dashboards.values():
        names = [a["name"] for a in d["annotations"]["list"]]
        assert names == ["Alerts firing", "Alerts resolved"]
        assert all('FROM "ct_alerts"' in a["query"] for a in d["annotations"]["list"])


def test_build_is_deterministic(catalog: Catalog) -> None:
    first = [dump(d) for d in build_dashboards(catalog, KpiSettings()).values()]
    second = [dump(d) for d in build_dashboards(catalog, KpiSettings()).values()]
    assert first == second
    assert all(text.endswith("}\n") for text in first)


def test_a_new_device_type_gets_its_panels_without_code_changes(tmp_path: Path, catalog: Catalog) -> None:
    types, inventory = tmp_path / "types", tmp_path / "inventory"
    shutil.copytree(TYPES, types)
    shutil.copytree(INVENTORY, inventory)
    (types / "tunnel_smoke.yaml").write_text(
        "type: tunnel_smoke\nsystem: tunnel\ndescription: Aspirating smoke detector\nreporting_interval_s: 30\n"
        "measurements:\n  obscuration:\n    description: Smoke obscuration\n    value_type: float\n    unit: '%/m'\n"
        "    range: {min: 0, max: 20}\n    typical: {min: 0, max: 0.05}\n    thresholds:\n"
        "      high: {warning: 0.5, critical: 2, source: 'vendor estimate [est]'}\n"
        "  alarm:\n    description: Alarm state\n    value_type: enum\n    values: [normal, alert, fire]\n"
        "    warning_values: [alert]\n    critical_values: [fire]\n", encoding="utf-8")
    with (inventory / "tunnel.yaml").open("a", encoding="utf-8") as f:
        f.write("- id: tun-c001-smoke\n  type: tunnel_smoke\n  location: {cabin: power, compartment: c001}\n")
    before = build_dashboards(catalog, KpiSettings())["ct-tunnel"]
    after = build_dashboards(load_catalog(types, inventory), KpiSettings())["ct-tunnel"]
    assert len(after["panels"]) == len(before["panels"]) + 5
    new = {p["title"]: p["type"] for p in _panels(after)
           if (p["type"] == "row" and "tunnel_smoke" in p["title"])
           or any(re.search(r'"tunnel_smoke"|/\^tunnel_smoke\(', t["query"]) for t in p.get("targets", []))}
    assert new == {"tunnel_smoke: Aspirating smoke detector": "row", "Smoke obscuration": "timeseries",
                   "Alarm state per device": "state-timeline", "tunnel_smoke: states needing attention": "table",
                   "tunnel_smoke: Smoke obscuration, highest per compartment \u00d7 time": "heatmap"}
    [smoke] = [p for p in _panels(after) if p["title"] == "Smoke obscuration"]
    assert '"$rp"./^tunnel_smoke(_max)?$/' in smoke["targets"][0]["query"]
    assert [s["value"] for s in smoke["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None, 0.5, 2]
    assert "tunnel_smoke" in after["templating"]["list"][0]["query"]
    # The overview counts the new type in coverage and completeness.
    overview = build_dashboards(load_catalog(types, inventory), KpiSettings())["ct-overview"]
    assert any(t["alias"] == "tunnel_smoke" for p in _panels(overview) for t in p.get("targets", []))


def test_kpi_settings_file_is_the_documented_defaults() -> None:
    assert load_kpi_settings(ROOT / "dashboards" / "kpi.toml") == KpiSettings()


def test_bad_kpi_settings_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "kpi.toml"
    path.write_text("[factors]\ngas_kgce_per_m3 = -1\n", encoding="utf-8")
    with pytest.raises(KpiError, match=r"(?s)kpi.toml.*factors.gas_kgce_per_m3"):
        load_kpi_settings(path)


def test_committed_dashboards_are_current() -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "dashboards" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert generate.stale() == [], "run: .venv/bin/python dashboards/generate.py"


def test_grafana_reads_with_the_read_only_account_never_the_pipelines_writer() -> None:
    from citytelemetry.config import InfluxSettings
    from citytelemetry.dashboards.provisioning import datasource_for
    from citytelemetry.security.influx import READER, WRITER

    text = datasource_for(InfluxSettings(url="http://127.0.0.1:8086", database="citytelemetry", username=WRITER))
    assert f"    user: {READER}\n" in text
    assert WRITER not in text
    assert "password: $CITYTELEMETRY_INFLUX_READER_PASSWORD" in text


def test_kpi_defaults_stay_within_physical_bounds_on_typical_operation() -> None:
    """Every KPI is a share (at most 100 %): at the profiles' typical values, with the default settings."""
    from citytelemetry.dashboards.formulas import Term, kpi_ratios
    from citytelemetry.profiles import load_catalog

    catalog = load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")

    def total(terms: tuple[Term, ...]) -> float:
        out = 0.0
        for t in terms:
            typical = catalog.profiles[t.measurement].measurements[t.field].typical
            assert typical is not None, f"{t.measurement}.{t.field}"
            devices = sum(1 for d in catalog.devices.values() if d.profile.type == t.measurement)
            out += t.coefficient * devices * (typical.min + typical.max) / 2
        return out

    values = {}
    for ratio in kpi_ratios(KpiSettings(), catalog):
        share = total(ratio.numerator) / total(ratio.denominator)
        values[ratio.key] = 1 - share if ratio.complement else share
    assert all(0 <= v <= 1 for v in values.values()), values
    assert 0.75 <= values["cchp_efficiency"] <= 0.9  # domain reference: total efficiency about 85 %


def test_panels_link_to_their_runbook_and_firing_alerts_to_the_alert_page(
        dashboards: dict[str, dict[str, Any]]) -> None:
    tunnel = dashboards["ct-tunnel"]["panels"]
    o2 = next(p for p in tunnel if p["title"].startswith("tunnel_multigas: Oxygen concentration, lowest"))
    assert {"title": "runbook: tunnel_multigas", "url": "http://127.0.0.1:9108/docs/runbooks.md#tunnel_multigas",
            "targetBlank": True} in o2["links"]
    typed = [p for d in dashboards.values() for p in d["panels"] if p["type"] != "row" and "links" in p]
    assert len(typed) >= 140
    overview = dashboards["ct-overview"]["panels"]
    firing = next(p for p in overview if p["title"] == "Firing alerts" and p["type"] == "table")
    assert firing["fieldConfig"]["defaults"]["links"][0]["url"] == (
        "http://127.0.0.1:9108/alerts/${__data.fields.alertname}/${__data.fields.fingerprint}")
