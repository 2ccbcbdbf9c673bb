"""Each simulated incident, through the real pipeline and a real Alertmanager to a loopback webhook:
exactly the expected pages (alertname, severity, receiver, device or compartment) and their resolutions.

The compartment and unit incidents run side by side in one simulation (they touch disjoint devices, as
scenarios.py guarantees), and each is then checked on its own: pages are told apart by device or
compartment. The network silence runs alone: it is a site-level incident.

Inhibition (deploy/alertmanager.yml: a device's critical silences its warnings) shapes the expectations:
a warning that is already firing when the critical starts was announced before; a warning that starts
while the critical fires is never announced (CHP trip: low efficiency); a warning that clears while the
critical fires is never announced as resolved (sump level rising, DTS rise rate).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from simulators.district import DistrictSimulator, Pacing
from simulators.scenarios import SCENARIOS, Effect, Scenario, silent_network_nodes

from citytelemetry.observability.prometheus import registry_for
from citytelemetry.profiles import Catalog, RegisteredDevice
from citytelemetry.run import Pipeline
from tests.conftest import MqttBroker, influx_query

from .alerting.harness import Bench, Page, alert_settings, alertmanager_with_webhook, running, who
from .pipeline_harness import shipped_catalog

pytestmark = pytest.mark.integration
SPEED = 30.0  # 1 simulated minute = 2 s: warning -> critical gaps of >= 60 s stay > group_wait (1 s)

CHAT, PAGER = "chat", "pager"


def _both(receiver: str, name: str, severity: str, subject: str) -> set[Page]:
    return {(receiver, status, name, severity, subject) for status in ("firing", "resolved")}


EXPECTED: dict[str, set[Page]] = {
    "gas_leak": (_both(CHAT, "tunnel_multigas_ch4_high", "warning", "tun-c002-gas1")
                 | _both(CHAT, "tunnel_multigas_ch4_high", "warning", "tun-c002-gas2")
                 | _both(PAGER, "tunnel_multigas_ch4_high", "critical", "tun-c002-gas1")
                 | _both(PAGER, "gas_without_ventilation", "critical", "compartment c002")),
    "sump_pump_failure": (_both(CHAT, "tunnel_sump_pump1_state", "warning", "tun-c004-sump")
                          # clears under the critical: its re-sent resolution is announced once the critical resolved
                          | _both(CHAT, "sump_level_rising", "warning", "tun-c004-sump")
                          | _both(CHAT, "tunnel_sump_level_high", "warning", "tun-c004-sump")
                          | _both(PAGER, "tunnel_sump_level_high", "critical", "tun-c004-sump")),
    "fan_failure": _both(CHAT, "tunnel_fan_state", "warning", "tun-c003-fan"),
    "dts_hot_spot": (_both(CHAT, "tunnel_dts_rise_rate_high", "warning", "tun-c005-dts")  # as sump_level_rising
                     | _both(CHAT, "tunnel_dts_t_max_high", "warning", "tun-c005-dts")
                     | _both(PAGER, "tunnel_dts_t_max_high", "critical", "tun-c005-dts")),
    "sensor_drift": _both(CHAT, "o2_sensors_disagree", "warning", "compartment c007"),
    "stuck_sensor": _both(CHAT, "o2_flat_line", "warning", "tun-c006-gas1"),
    "device_dropout": _both(CHAT, "device_offline", "warning", "tun-c008-gas2"),
    "chp_trip": _both(PAGER, "chp_engine_state", "critical", "stn-chp1"),  # its low efficiency: inhibited
    "heat_pump_cold_source": (_both(CHAT, "heat_pump_source_in_low", "warning", "stn-hp1")
                              | _both(PAGER, "heat_pump_source_in_low", "critical", "stn-hp1")),
    "compartment_fire": (_both(PAGER, "tunnel_fire_detector_state", "critical", "tun-c009-fire")
                         | _both(PAGER, "fire_with_fans_running", "critical", "compartment c009")),
}
SIDE_BY_SIDE = sorted(EXPECTED)


def _scope(scenario: Scenario, catalog: Catalog) -> set[str]:
    """What a page of this scenario can be about: its devices and their compartments or units."""
    devices = [catalog.devices[d] for d in scenario.scope(catalog)]
    return {d.id for d in devices} | {f"{k} {d.location[k]}" for d in devices for k in ("compartment", "unit")
                                      if k in d.location}


def _combined(scenarios: Sequence[Scenario]) -> Scenario:
    def effects(devices: Sequence[RegisteredDevice]) -> tuple[Effect, ...]:
        return tuple(e for s in scenarios for e in s.effects(devices))

    return Scenario("side_by_side", "all compartment and unit incidents at once", effects,
                    lambda c: set().union(*(s.scope(c) for s in scenarios)), max(s.span_s for s in scenarios))


class Outcome:
    def __init__(self, pages: set[Page], history: list[tuple[str, str, str, str]], catalog: Catalog,
                 metrics: dict[str, float] | None = None, readings_accepted: int = 0) -> None:
        self.pages, self.history, self.catalog = pages, history, catalog
        self.metrics, self.readings_accepted = metrics or {}, readings_accepted


def _scrape(pipeline: Pipeline) -> dict[str, float]:
    """The pipeline's /metrics text, unlabelled samples only."""
    text = generate_latest(registry_for(pipeline.stats)).decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#") and "{" not in line}


async def _run_incidents(tmp: Path, broker: MqttBroker, influx_url: str, prefix: str, db: str,
                         scenario: Scenario, expected: set[Page]) -> Outcome:
    catalog = scenario.focus(shipped_catalog())
    async with alertmanager_with_webhook(tmp) as (am_url, webhook):
        settings = alert_settings(tmp, broker.url, prefix, influx_url, db, am_url)
        bench = Bench(settings, catalog, webhook, am_url, broker.url)
        sim = DistrictSimulator(catalog, seed=3, duration_s=scenario.span_s + 60, pacing=Pacing(speed=SPEED),
                                topic_prefix=prefix, scenario=scenario)
        async with running(bench) as pipeline:
            await bench.publish(sim)
            await bench.wait_pages(expected)
        pages = webhook.pages()
        metrics, accepted = _scrape(pipeline), sum(pipeline.stats.readings_accepted.values())
    [series] = influx_query(influx_url, db, "SELECT value, alertname, severity, state, device FROM ct_alerts") or [
        {"values": []}]
    history = [(row[2], row[3], row[4], row[5] or "") for row in series["values"]]
    return Outcome(pages, history, catalog, metrics, accepted)


@pytest.fixture(scope="module")
def incidents(tmp_path_factory: pytest.TempPathFactory, mosquitto: MqttBroker, influxdb: str) -> Outcome:
    """One simulation with every compartment and unit incident (about 25 s of wall time)."""
    scenario = _combined([SCENARIOS[name] for name in SIDE_BY_SIDE])
    expected = set().union(*EXPECTED.values())
    tag = uuid.uuid4().hex[:12]
    return asyncio.run(_run_incidents(tmp_path_factory.mktemp("incidents"), mosquitto, influxdb, f"test/{tag}",
                                      f"test_{tag}", scenario, expected))


@pytest.mark.parametrize("name", SIDE_BY_SIDE)
def test_scenario_pages_exactly_as_expected(incidents: Outcome, name: str) -> None:
    scope = _scope(SCENARIOS[name], shipped_catalog())
    got = {page for page in incidents.pages if page[4] in scope}
    assert sorted(got) == sorted(EXPECTED[name])


def test_no_page_outside_the_scenarios(incidents: Outcome) -> None:
    assert sorted(incidents.pages - set().union(*EXPECTED.values())) == []


def test_alert_counters_on_metrics_match_what_happened(incidents: Outcome) -> None:
    m = incidents.metrics
    assert m["citytelemetry_alert_readings_total"] == incidents.readings_accepted > 0
    assert m["citytelemetry_alert_transitions_total"] == len(incidents.history)  # one history point each
    assert m["citytelemetry_alert_deliveries_total"] >= len(incidents.pages)
    assert (m["citytelemetry_alert_rule_errors_total"], m["citytelemetry_alert_events_dropped_total"],
            m["citytelemetry_alert_delivery_failures_total"], m["citytelemetry_alert_events_queued"]) == (0, 0, 0, 0)


def test_alert_history_lands_in_influxdb_including_inhibited_alerts(incidents: Outcome) -> None:
    history = set(incidents.history)
    # The engine's low efficiency was raised and closed (history) though Alertmanager never sent it.
    assert ("chp_engine_eta_el_low", "warning", "firing", "stn-chp1") in history
    assert ("chp_engine_eta_el_low", "warning", "resolved", "stn-chp1") in history
    assert not [p for p in incidents.pages if p[2] == "chp_engine_eta_el_low"]
    # Every page has its history point.
    for _receiver, status, name, severity, subject in incidents.pages:
        if subject.startswith(("tun-", "stn-")):
            assert (name, severity, status, subject) in history


@pytest.fixture
def network_silence(tmp_path: Path, mosquitto: MqttBroker, influxdb: str, influx_db_name: str,
                    mqtt_topic_prefix: str) -> tuple[Outcome, list[str]]:
    scenario = SCENARIOS["network_silence"]
    nodes = silent_network_nodes(scenario.focus(shipped_catalog()).devices.values())
    expected = _both(PAGER, "network_coverage_low", "critical", "hunnan network")
    for node in nodes:
        expected |= _both(CHAT, "device_offline", "warning", node)
    return asyncio.run(_run_incidents(tmp_path, mosquitto, influxdb, mqtt_topic_prefix, influx_db_name, scenario,
                                     expected)), nodes


def test_network_silence_pages_coverage_and_each_silent_node(network_silence: tuple[Outcome, list[str]]) -> None:
    outcome, nodes = network_silence
    assert len(nodes) == 51  # 15 % of the 340 energy-network nodes
    expected = _both(PAGER, "network_coverage_low", "critical", "hunnan network")
    for node in nodes:
        expected |= _both(CHAT, "device_offline", "warning", node)
    assert sorted(outcome.pages) == sorted(expected)


def test_who_names_devices_and_groups() -> None:
    assert who({"device": "tun-c001-gas1", "compartment": "c001"}) == "tun-c001-gas1"
    assert who({"compartment": "c002", "cabin": "power"}) == "compartment c002"
    assert who({"site": "hunnan", "system": "network"}) == "hunnan network"
