"""Alertmanager restarts (a real one, with its data dir kept and without): a resolution it took but had not
yet notified is announced after the restart, and a device's critical still mutes its warnings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from citytelemetry.alerts import build_evaluator
from citytelemetry.alerts.evaluator import AlertEngine
from citytelemetry.config import Settings
from citytelemetry.profiles import Catalog
from citytelemetry.records import Reading
from tests.conftest import MqttBroker

from .alerting.harness import Webhook, alert_settings, alertmanager_process
from .pipeline_harness import shipped_catalog, wait_for

pytestmark = pytest.mark.integration
GAS = "tun-c002-gas1"
CH4 = "tunnel_multigas_ch4_high"


def _gas(catalog: Catalog, ch4: float, ts_ms: int) -> Reading:
    device = catalog.devices[GAS]
    return Reading("tunnel_multigas", GAS, device.tags, {"ch4": ch4}, ts_ms, ts_ms // 1000)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _count(webhook: Webhook, receiver: str, status: str) -> int:
    return sum(1 for n in webhook.notifications for a in n["alerts"]
               if n["_path"] == receiver and a["status"] == status and a["labels"]["alertname"] == CH4)


async def _alertmanager_alerts(url: str) -> list[dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/api/v2/alerts") as response:
        body: list[dict[str, object]] = await response.json()
        return body


@asynccontextmanager
async def engine_running(settings: Settings, catalog: Catalog) -> AsyncIterator[AlertEngine]:
    engine = build_evaluator(settings, catalog, lambda _lines: None)
    assert isinstance(engine, AlertEngine)
    task = asyncio.create_task(engine.run())
    try:
        yield engine
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.aclose()


async def test_a_resolution_alertmanager_took_but_had_not_notified_is_announced_after_its_restart(
        tmp_path: Path, mosquitto: MqttBroker) -> None:
    catalog = shipped_catalog()
    # group_interval 30 s: Alertmanager holds the resolution that long before notifying it; it restarts first.
    async with alertmanager_process(tmp_path, timings={"group_wait": "1s", "group_interval": "30s"}) as (am, webhook):
        settings = alert_settings(tmp_path, mosquitto.url, "unused", "http://127.0.0.1:9", "unused", am.url,
                                  resend_interval_s=2.0, resolved_resend_s=120.0)
        async with engine_running(settings, catalog) as engine:
            t0 = _now_ms()
            engine.observe([_gas(catalog, 25.0, t0)])
            await wait_for(lambda: _count(webhook, "pager", "firing") == 1, 15, "the page")
            sent = engine.delivery.stats.alerts_sent
            engine.observe([_gas(catalog, 0.3, t0 + 1_000)])
            await wait_for(lambda: engine.delivery.stats.alerts_sent > sent and not engine.delivery.queue, 10,
                           "Alertmanager took the resolution")
            assert _count(webhook, "pager", "resolved") == 0  # not notified yet: 30 s group_interval
            await am.restart(keep_data=True)
            await wait_for(lambda: _count(webhook, "pager", "resolved") == 1, 20, "the resolution, after the restart")
    resolved = next(a for n in webhook.notifications for a in n["alerts"] if a["status"] == "resolved")
    assert resolved["annotations"]["summary"] == (
        "tun-c002-gas1: resolved: methane concentration 0.3 %LEL, below the 18.2 %LEL clear level")
    assert _count(webhook, "pager", "firing") == 1  # the data dir's notification log: no second page


@pytest.mark.parametrize("keep_data", [True, False], ids=["data-kept", "data-lost"])
async def test_a_critical_still_mutes_its_warning_after_an_alertmanager_restart(
        tmp_path: Path, mosquitto: MqttBroker, keep_data: bool) -> None:
    catalog = shipped_catalog()
    async with alertmanager_process(tmp_path) as (am, webhook):  # 1 s grouping: a leak would show at once
        settings = alert_settings(tmp_path, mosquitto.url, "unused", "http://127.0.0.1:9", "unused", am.url,
                                  resend_interval_s=2.0)
        async with engine_running(settings, catalog) as engine:
            t0 = _now_ms()
            for back_s in (40, 30, 20, 10, 0):  # CH4 35 %LEL for 40 s: critical at once, the warning after 30 s
                engine.observe([_gas(catalog, 35.0, t0 - back_s * 1000)])
            assert sorted(a.rule.severity.value for a in engine.firing()) == ["critical", "warning"]
            await wait_for(lambda: _count(webhook, "pager", "firing") == 1, 15, "the page")
            await asyncio.sleep(3.0)  # > group_wait + group_interval: a leaked warning would be here
            assert _count(webhook, "chat", "firing") == 0
            for _ in range(3):  # the race is at restart: try it a few times
                await am.restart(keep_data=keep_data)
                resends = engine.delivery.stats.resends
                await wait_for(lambda: engine.delivery.stats.resends >= resends + 2, 15, "two re-sends")  # noqa: B023
                alerts = await _alertmanager_alerts(am.url)
                assert len(alerts) == 2
                await asyncio.sleep(2.5)
                assert _count(webhook, "chat", "firing") == 0
    # Without its notification log a restarted Alertmanager does not know it paged: it pages again.
    assert _count(webhook, "pager", "firing") == (1 if keep_data else 4)
    assert _count(webhook, "chat", "firing") == 0
