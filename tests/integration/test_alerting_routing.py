"""Routing through the real Alertmanager with the shipped deploy/alertmanager.yml (its timings too):
independent criticals are separate notification groups, so each is paged within the pager's group_wait."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from citytelemetry.alerts import build_evaluator
from citytelemetry.alerts.evaluator import AlertEngine
from citytelemetry.profiles import Catalog
from citytelemetry.records import FieldValue, Reading
from tests.conftest import MqttBroker

from .alerting.harness import alert_settings, alertmanager_process
from .pipeline_harness import shipped_catalog, wait_for

pytestmark = pytest.mark.integration
PAGER_GROUP_WAIT_S = 5.0  # deploy/alertmanager.yml, critical route (asserted in tests/unit/test_alertmanager_config.py)
SLACK_S = 2.0  # POST, dispatch and webhook on a loaded 2-core machine


def _reading(catalog: Catalog, device_id: str, fields: dict[str, FieldValue], ts_ms: int) -> Reading:
    device = catalog.devices[device_id]
    return Reading(device.profile.type, device_id, device.tags, fields, ts_ms, ts_ms // 1000)


def _firing_at(notifications: list[dict[str, object]], alertname: str) -> float | None:
    for n in notifications:
        for alert in n["alerts"]:  # type: ignore[attr-defined]
            if alert["labels"]["alertname"] == alertname and alert["status"] == "firing" and n["_path"] == "pager":
                return float(n["_at"])  # type: ignore[arg-type]
    return None


async def test_two_unrelated_criticals_15_s_apart_are_each_paged_within_the_group_wait(
        tmp_path: Path, mosquitto: MqttBroker) -> None:
    catalog = shipped_catalog()
    async with alertmanager_process(tmp_path, timings=None) as (am, webhook):
        settings = alert_settings(tmp_path, mosquitto.url, "unused", "http://127.0.0.1:9", "unused", am.url,
                                  resend_interval_s=60.0)
        engine = build_evaluator(settings, catalog, lambda _lines: None)
        assert isinstance(engine, AlertEngine)
        task = asyncio.create_task(engine.run())
        try:
            now = time.time_ns() // 1_000_000
            # The audit's case: a CHP jacket-temperature critical (for 10 s: two readings 10 s apart) ...
            engine.observe([_reading(catalog, "stn-chp1", {"jacket_temp": 99.0}, now - 10_000)])
            engine.observe([_reading(catalog, "stn-chp1", {"jacket_temp": 99.5}, now)])
            chp_sent = time.monotonic()
            await wait_for(lambda: _firing_at(webhook.notifications, "chp_engine_jacket_temp_high"), 15,
                           "the CHP page")
            await asyncio.sleep(max(0.0, chp_sent + 15.0 - time.monotonic()))
            # ... and 15 s later a feeder breaker trip, elsewhere in the district.
            engine.observe([_reading(catalog, "net-f01", {"breaker": "tripped"}, now + 15_000)])
            feeder_sent = time.monotonic()
            await wait_for(lambda: _firing_at(webhook.notifications, "feeder_10kv_breaker"), 15, "the feeder page")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await engine.aclose()
    chp_at = _firing_at(webhook.notifications, "chp_engine_jacket_temp_high")
    feeder_at = _firing_at(webhook.notifications, "feeder_10kv_breaker")
    assert chp_at is not None
    assert feeder_at is not None
    assert chp_at - chp_sent <= PAGER_GROUP_WAIT_S + SLACK_S
    assert feeder_at - feeder_sent <= PAGER_GROUP_WAIT_S + SLACK_S
    groups = {n["groupKey"] for n in webhook.notifications if n["_path"] == "pager"}
    assert len(groups) == 2
    incidents = {n["groupLabels"]["incident"] for n in webhook.notifications if n["_path"] == "pager"}
    assert incidents == {"unit:chp1", "feeder:f01"}
