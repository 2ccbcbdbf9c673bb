"""Every InfluxQL query of every generated dashboard, run as Grafana would run it, against a real
InfluxDB 1.x filled by the real pipeline from simulated district traffic.

Simulator -> mosquitto -> pipeline -> InfluxDB covers the device-type measurements, ct_device_status,
ct_rejects, ct_pipeline and ct_pipeline_rejects; the storage tiers are applied and the rollups computed from
that raw data, so long ranges run over the rollups the hidden ``$rp`` variable picks. Two things the simulator
cannot produce are written here directly, as representative points: ct_alerts (the alerting stage's
notifications) and the spool fields of ct_pipeline (spool_depth, spool_age_s, redeliveries).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from simulators.district import DistrictSimulator, Pacing

from citytelemetry.config import HttpSettings, InfluxSettings, MqttSettings, PipelineSettings, Settings, StorageSettings
from citytelemetry.dashboards import KpiSettings, build_dashboards
from citytelemetry.dashboards.formulas import Ratio, kpi_ratios
from citytelemetry.dashboards.macros import TimeRange, interpolate
from citytelemetry.dashboards.results import InfluxQuery, last_values, run_panel
from citytelemetry.dashboards.transforms import reduce_fields
from citytelemetry.profiles import Catalog
from citytelemetry.storage.build import backfill, build_rollups
from citytelemetry.storage.retention import apply_v1
from tests.conftest import MqttBroker

from .pipeline_harness import ROOT, publish_and_settle, running_pipeline, shipped_catalog

pytestmark = pytest.mark.integration

RANGE = TimeRange(last="3h")
SIM_SECONDS = 2 * 3600  # two hours: the 15-minute meters report often enough for rates


@dataclass
class District:
    query: InfluxQuery
    sim: DistrictSimulator
    catalog: Catalog
    instance: str


def _write(url: str, db: str, lines: list[str]) -> None:
    request = urllib.request.Request(f"{url}/write?db={db}&precision=ms", data="\n".join(lines).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def _representative_points(url: str, db: str, instance: str) -> None:
    """ct_alerts and the spool fields: not produced by the simulator, so written here."""
    now = int(time.time() * 1000)
    lines = []
    for i, (system, device, dtype, loc) in enumerate([
            ("tunnel", "tun-c001-gas1", "tunnel_multigas", "compartment=c001"),
            ("station", "stn-chp1", "chp_engine", "unit=chp1"),
            ("network", "net-hes01", "heat_exchange_station", "node=hes01")]):
        tags = f"site=hunnan,system={system},device={device},device_type={dtype},{loc}"
        for j, state in enumerate(("firing", "resolved", "firing")):
            name = "GasHigh" if j < 2 else "SensorStuck"
            lines.append(f'ct_alerts,alertname={name},severity={"critical" if j < 2 else "warning"},state={state},'
                         f'{tags} value={40.0 + j},threshold=20.0,summary="{name} on {device}",'
                         f'fingerprint="fp{i}{name}" {now - 600_000 + j * 120_000 + i}')
    lines.extend(f"ct_pipeline,instance={instance} spool_depth={10 * k}i,spool_age_s={2.5 * k},"
                 f"redeliveries={3 * k}i {now - 300_000 + k * 30_000}" for k in range(6))
    _write(url, db, lines)


@pytest.fixture(scope="module")
def district(mosquitto: MqttBroker, influxdb: str, tmp_path_factory: pytest.TempPathFactory) -> District:
    state = tmp_path_factory.mktemp("district-state")  # never the repository's .run/: state outlives a run
    db = f"test_{uuid.uuid4().hex[:12]}"
    prefix = f"test/{uuid.uuid4().hex[:12]}"
    catalog = shipped_catalog()
    instance = f"ct-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        mqtt=MqttSettings(url=mosquitto.url, topic_prefix=prefix, client_id=instance),
        influx=InfluxSettings(url=influxdb, database=db), http=HttpSettings(port=0),
        pipeline=PipelineSettings(profiles_dir=ROOT / "device_profiles" / "types",
                                  inventory_dir=ROOT / "device_profiles" / "inventory",
                                  flush_interval_s=0.2, selfmetrics_interval_s=0.3,
                                  # batches under 1 MB: aiohttp warns about larger raw-bytes bodies
                                  batch_size=1000, spool_dir=state / "spool", deadletter_dir=state / "deadletters",
                                  checkpoint_file=state / "device-state.ckpt"),
        storage=StorageSettings(checkpoint_file=state / "rollup-windows.json"),
    )
    # Three devices per type, two simulated hours, two bad messages (dead letters, reject counters).
    sim = DistrictSimulator(catalog, seed=7, duration_s=SIM_SECONDS, max_devices=60, batch=20,
                            pacing=Pacing(speed=0), faults={"not_json": 1, "unknown_device": 1}, topic_prefix=prefix)

    async def run() -> None:
        async with running_pipeline(settings, catalog) as pipeline:
            await publish_and_settle(pipeline, sim, mosquitto.url)
            await asyncio.sleep(2.5)  # a few more self-metrics points after the last message

    async def rollups() -> None:
        rollups = build_rollups(settings, catalog)
        now = int(time.time() * 1000)
        try:
            assert await backfill(rollups, now - 4 * 3_600_000, now + 60_000) > 0
        finally:
            await rollups.aclose()

    asyncio.run(run())
    apply_v1(settings.storage, settings.influx)
    asyncio.run(rollups())
    _representative_points(influxdb, db, instance)
    return District(InfluxQuery(influxdb, db), sim, catalog, instance)


@pytest.fixture(scope="module")
def dashboards(district: District) -> dict[str, dict[str, Any]]:
    return build_dashboards(district.catalog, KpiSettings())


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _interval(uid: str) -> str:
    # The pipeline dashboard is zoomed in: its counters are written every 0.3 s here.
    return "1s" if uid == "ct-pipeline" else "1m"


def _tier(dashboard: dict[str, Any], district: District, time_range: TimeRange) -> list[str]:
    """The hidden storage-tier variable as Grafana resolves it for the range: exactly one retention policy."""
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "rp"]
    text = interpolate(variable["query"], variables={}, time_range=time_range, interval="1m")
    [series] = district.query.run(text)
    [[_, rp]] = series.values
    return [rp]


def _variables(dashboard: dict[str, Any], district: District,
               time_range: TimeRange = RANGE) -> dict[str, list[str] | None]:
    """site = hunnan (one value), every other variable All; rp as resolved for the range."""
    chosen: dict[str, list[str] | None] = {}
    for variable in dashboard["templating"]["list"]:
        chosen[variable["name"]] = ["hunnan"] if variable["name"] == "site" else None
        if variable["name"] == "rp":
            chosen["rp"] = _tier(dashboard, district, time_range)
    return chosen


def test_every_variable_query_lists_values(dashboards: dict[str, dict[str, Any]], district: District) -> None:
    for uid, dashboard in dashboards.items():
        variables = _variables(dashboard, district)
        for variable in dashboard["templating"]["list"]:
            if variable["name"] == "rp":
                continue  # resolved with the range: test_long_ranges_read_the_rollups
            text = interpolate(variable["query"], variables=variables, time_range=RANGE, interval="1m")
            values = [row[1] for s in district.query.run(text) for row in s.values]
            assert values, f"{uid}: variable {variable['name']}: {text} lists nothing"


def test_every_panel_query_returns_data(dashboards: dict[str, dict[str, Any]], district: District) -> None:
    empty, ran = [], 0
    for uid, dashboard in dashboards.items():
        variables = _variables(dashboard, district)
        for panel in _panels(dashboard):
            for target, series in run_panel(district.query, panel, variables=variables, time_range=RANGE,
                                            interval=_interval(uid)):
                ran += 1
                if not any(s.values for s in series):
                    empty.append(f"{uid} / {panel['title']} / {target['refId']}: {target['query']}")
    assert ran > 300
    assert not empty, "queries without data:\n" + "\n".join(empty)


@pytest.mark.parametrize(("last", "tier", "interval"), [("3h", "autogen", "1m"), ("30d", "rollup_5m", "15m"),
                                                     ("365d", "rollup_1h", "1h")])
def test_long_ranges_read_the_rollups(dashboards: dict[str, dict[str, Any]], district: District, last: str,
                                      tier: str, interval: str) -> None:
    """Every tiered target over the range's tier returns data (the rollups of the simulated hours; the
    interval is shorter than Grafana's for such a range so that two hours give rates)."""
    time_range = TimeRange(last=last)
    empty, ran = [], 0
    for uid, dashboard in dashboards.items():
        if not any(v["name"] == "rp" for v in dashboard["templating"]["list"]):
            continue
        variables = _variables(dashboard, district, time_range)
        assert variables["rp"] == [tier]
        for panel in _panels(dashboard):
            tiered = {**panel, "targets": [t for t in panel.get("targets", []) if "$rp" in t["query"]]}
            for target, series in run_panel(district.query, tiered, variables=variables, time_range=time_range,
                                            interval=interval):
                ran += 1
                if not any(s.values for s in series):
                    empty.append(f"{uid} / {panel['title']} / {target['refId']}: {target['query']}")
    assert ran > 150
    assert not empty, f"{tier}: queries without data:\n" + "\n".join(empty)


def test_multi_value_selection_narrows_the_tunnel(dashboards: dict[str, dict[str, Any]], district: District) -> None:
    """Two compartments chosen: Grafana sends (c001|c002); only those compartments come back."""
    dashboard = dashboards["ct-tunnel"]
    variables = _variables(dashboard, district)
    variables["compartment"] = ["c001", "c002"]
    heatmaps = [p for p in _panels(dashboard) if p["type"] == "heatmap"]
    assert heatmaps
    for panel in heatmaps:
        [(target, series)] = run_panel(district.query, panel, variables=variables, time_range=RANGE, interval="1m")
        assert "=~ /^(c001|c002)$/" in interpolate(target["query"], variables=variables, time_range=RANGE,
                                                    interval="1m")
        assert {s.tags["compartment"] for s in series} <= {"c001", "c002"}
        assert series


def test_annotation_queries_find_the_alerts(dashboards: dict[str, dict[str, Any]], district: District) -> None:
    for uid, dashboard in dashboards.items():
        for annotation in dashboard["annotations"]["list"]:
            text = interpolate(annotation["query"], variables=_variables(dashboard, district), time_range=RANGE,
                               interval="1m")
            series = district.query.run(text)
            assert series, f"{uid}: {annotation['name']}"
            assert series[0].values, f"{uid}: {annotation['name']}"
            assert {"summary", "alertname", "severity", "device"} <= set(series[0].columns)


def _expected_ratio(ratio: Ratio, district: District) -> float:
    """The KPI from the simulator's own messages: per-device means, summed, times the coefficients."""
    samples: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for message in district.sim.messages():
        if message.faults or not message.topic.endswith("/telemetry"):
            continue
        body = json.loads(message.payload)
        for reading in body.get("readings", [body]):
            for key, value in reading["values"].items():
                samples[(message.device_type, key)][message.device_id].append(value)

    def side(terms: tuple[Any, ...]) -> float:
        return sum(t.coefficient * sum(sum(v) / len(v) for v in samples[(t.measurement, t.field)].values())
                   for t in terms)

    value = side(ratio.numerator) / side(ratio.denominator)
    return 1 - value if ratio.complement else value


def test_kpis_match_the_formulas_on_the_simulated_data(dashboards: dict[str, dict[str, Any]],
                                                        district: District) -> None:
    ratios = {r.title: r for r in kpi_ratios(KpiSettings(), district.catalog)}
    station = dashboards["ct-station"]
    checked = 0
    for panel in _panels(station):
        if panel["title"] not in ratios:
            continue
        results = run_panel(district.query, panel, variables=_variables(station, district), time_range=RANGE,
                            interval="1m")
        shown = reduce_fields(panel["transformations"], last_values(results))
        [(name, value)] = shown.items()
        assert name == panel["title"]
        assert value is not None
        assert math.isfinite(value)
        assert value == pytest.approx(_expected_ratio(ratios[name], district), rel=1e-6)
        checked += 1
    assert checked == len(ratios)
