"""Delivery to a real Alertmanager: normal operation pages nobody, a restart does not page twice, and
alerts raised while Alertmanager is down wait and arrive once it is up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from simulators.district import DistrictSimulator, Pacing

from citytelemetry.alerts import build_evaluator
from citytelemetry.alerts.evaluator import AlertEngine
from citytelemetry.profiles import Catalog
from citytelemetry.records import Reading
from citytelemetry.services import free_port
from tests.conftest import MqttBroker

from .alerting.harness import Bench, alert_settings, alertmanager_with_webhook, running
from .pipeline_harness import shipped_catalog, wait_for

pytestmark = pytest.mark.integration
GAS = "tun-c002-gas1"


def _gas(catalog: Catalog, ch4: float, ts_ms: int, seq: int) -> Reading:
    device = catalog.devices[GAS]
    return Reading("tunnel_multigas", GAS, device.tags, {"o2": 20.9, "h2s": 0.3, "ch4": ch4, "co": 1.0,
                                                         "sensor_state": "ok"}, ts_ms, seq)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_normal_operation_of_the_whole_district_pages_nobody(
        tmp_path: Path, mosquitto: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str) -> None:
    catalog = shipped_catalog()
    async with alertmanager_with_webhook(tmp_path) as (am_url, webhook):
        settings = alert_settings(tmp_path, mosquitto.url, mqtt_topic_prefix, influxdb, influx_db_name, am_url)
        bench = Bench(settings, catalog, webhook, am_url, mosquitto.url)
        sim = DistrictSimulator(catalog, seed=7, duration_s=615, pacing=Pacing(speed=40),
                                topic_prefix=mqtt_topic_prefix)
        async with running(bench):
            summary = await bench.publish(sim)
            await asyncio.sleep(2.5)  # > Alertmanager's group_wait: a page in flight would arrive now
            engine = bench.engine
            assert isinstance(engine, AlertEngine)
            assert engine.readings == summary.readings_sent
            assert engine.transitions == 0
            assert engine.errors == 0
            assert len(engine.tracker.open) == 0  # not even pending
    assert len(catalog.devices) == 1637
    assert summary.last_ts_ms is not None
    assert summary.first_ts_ms is not None
    assert summary.last_ts_ms - summary.first_ts_ms >= 600_000  # at least 10 simulated minutes
    assert webhook.notifications == []


async def test_a_restart_neither_pages_twice_nor_forgets(tmp_path: Path, mosquitto: MqttBroker) -> None:
    catalog = shipped_catalog()
    async with alertmanager_with_webhook(tmp_path) as (am_url, webhook):
        settings = alert_settings(tmp_path, mosquitto.url, "unused", "http://127.0.0.1:9", "unused", am_url)
        lines: list[bytes] = []
        t0 = _now_ms()
        first = build_evaluator(settings, catalog, lines.extend)
        task = asyncio.create_task(first.run())
        first.observe([_gas(catalog, 25.0, t0, 1)])  # CH4 critical (for 0 s); the warning is only pending
        await wait_for(lambda: webhook.pages("firing"), 15, "the critical page")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await first.aclose()
        assert settings.alerts.state_file.is_file()
        pages_before = len(webhook.notifications)

        second = build_evaluator(settings, catalog, lines.extend)
        assert isinstance(second, AlertEngine)
        assert [a.rule.name for a in second.firing()] == ["tunnel_multigas_ch4_high"]
        task = asyncio.create_task(second.run())
        try:
            second.observe([_gas(catalog, 26.0, t0 + 10_000, 2)])  # still critical: no new transition
            await asyncio.sleep(3.0)  # a resend (2 s) reaches Alertmanager, which has nothing new to say
            assert second.transitions == 0
            assert second.delivery.stats.alerts_sent >= 2  # the restored alert and its resend
            assert len(webhook.notifications) == pages_before
            second.observe([_gas(catalog, 1.0, t0 + 20_000, 3)])
            await wait_for(lambda: webhook.pages("resolved"), 15, "the resolution")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await second.aclose()
    assert webhook.pages() == {("pager", "firing", "tunnel_multigas_ch4_high", "critical", GAS),
                               ("pager", "resolved", "tunnel_multigas_ch4_high", "critical", GAS)}
    firing = [n for n in webhook.notifications if n["status"] == "firing"]
    assert len(firing) == 1
    assert [line.split(b" ")[0].split(b",state=")[1].split(b",")[0] for line in lines] == [b"firing", b"resolved"]


async def test_alerts_wait_for_an_unreachable_alertmanager_and_arrive_when_it_is_up(tmp_path: Path,
                                                                                     mosquitto: MqttBroker) -> None:
    catalog = shipped_catalog()
    port = free_port()
    settings = alert_settings(tmp_path, mosquitto.url, "unused", "http://127.0.0.1:9", "unused",
                              f"http://127.0.0.1:{port}")
    engine = build_evaluator(settings, catalog, lambda _lines: None)
    assert isinstance(engine, AlertEngine)
    task = asyncio.create_task(engine.run())
    try:
        t0 = _now_ms()
        engine.observe([_gas(catalog, 25.0, t0, 1)])  # fires while nobody listens
        await wait_for(lambda: engine.delivery.stats.failures >= 2, 15, "two failed attempts")
        assert len(engine.delivery.queue) == 1
        async with alertmanager_with_webhook(tmp_path, port=port) as (_am_url, webhook):
            await wait_for(lambda: webhook.pages("firing"), 40, "the page, once Alertmanager is up")
            assert not engine.delivery.queue
            engine.observe([_gas(catalog, 1.0, t0 + 5_000, 2)])
            await wait_for(lambda: webhook.pages("resolved"), 10, "the resolution")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.aclose()
    assert engine.delivery.stats.dropped == 0
    assert webhook.pages() == {("pager", "firing", "tunnel_multigas_ch4_high", "critical", GAS),
                               ("pager", "resolved", "tunnel_multigas_ch4_high", "critical", GAS)}
