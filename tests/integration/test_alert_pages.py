"""The links an alert carries lead somewhere: its generatorURL (as Alertmanager hands it to the pager) is a page
the pipeline's HTTP server serves on its configured address, with the rule, recent values and the runbook,
and the runbook link is absolute and lands on the runbook's section."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from citytelemetry.alerts import build_evaluator
from citytelemetry.alerts.evaluator import AlertEngine
from citytelemetry.config import HttpSettings
from citytelemetry.observability.http import start_http
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.records import Reading
from citytelemetry.services import free_port
from tests.conftest import MqttBroker

from .alerting.harness import alert_settings, alertmanager_with_webhook
from .pipeline_harness import shipped_catalog, wait_for

pytestmark = pytest.mark.integration
GAS = "tun-c002-gas1"


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_generator_url_and_runbook_link_are_pages_the_pipeline_serves(tmp_path: Path,
                                                                            mosquitto: MqttBroker) -> None:
    catalog = shipped_catalog()
    port = free_port()
    async with alertmanager_with_webhook(tmp_path) as (am_url, webhook):
        settings = alert_settings(tmp_path, mosquitto.url, "unused", "http://127.0.0.1:9", "unused", am_url)
        settings = settings.model_copy(update={"http": HttpSettings(host="127.0.0.1", port=port)})
        engine = build_evaluator(settings, catalog, lambda _lines: None)
        assert isinstance(engine, AlertEngine)
        runner = await start_http(PipelineStats(), "127.0.0.1", port, routes=[engine.pages.add_routes])
        task = asyncio.create_task(engine.run())
        try:
            device = catalog.devices[GAS]
            now = time.time_ns() // 1_000_000
            for i, ch4 in enumerate((24.0, 26.5)):
                engine.observe([Reading("tunnel_multigas", GAS, device.tags, {"ch4": ch4}, now + i * 10_000, i)])
            await wait_for(lambda: webhook.pages("firing"), 15, "the page")
            alert = next(a for n in webhook.notifications for a in n["alerts"])
            generator, runbook = alert["generatorURL"], alert["annotations"]["runbook_url"]
            status, page = await _get(generator)
            status_runbook, runbook_page = await _get(runbook)
            status_index, index = await _get(f"http://127.0.0.1:{port}/alerts")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await engine.aclose()
            await runner.cleanup()
    fingerprint = engine.firing()[0].fingerprint
    assert generator == f"http://127.0.0.1:{port}/alerts/tunnel_multigas_ch4_high/{fingerprint}"
    assert runbook == f"http://127.0.0.1:{port}/docs/runbooks.md#tunnel_multigas"
    assert status == 200
    assert "tun-c002-gas1: methane concentration 26.5 %LEL ≥ critical level 20 %LEL" in page
    assert "18.2 %LEL" in page  # the clear level
    assert "24 %LEL" in page  # a recent value
    assert "26.5 %LEL" in page
    assert f"href='{runbook}'" in page
    assert "GB 50838-2015 7.5.7" in page  # the source of the level
    assert status_runbook == 200
    assert "<h2 id='tunnel_multigas'>tunnel_multigas</h2>" in runbook_page
    assert status_index == 200
    assert f"/alerts/tunnel_multigas_ch4_high/{fingerprint}" in index


def test_public_and_docs_urls_make_the_links_absolute_elsewhere(tmp_path: Path) -> None:
    catalog = shipped_catalog()
    settings = alert_settings(tmp_path, "mqtt://127.0.0.1:1", "unused", "http://127.0.0.1:9", "unused",
                              "http://127.0.0.1:9", public_url="https://ct.example.org/", docs_url="https://docs.example.org/ct")
    engine = build_evaluator(settings, catalog, lambda _lines: None)
    assert isinstance(engine, AlertEngine)
    assert engine.links.alert("x", "f00") == "https://ct.example.org/alerts/x/f00"
    info = next(i for i in engine.ruleset.infos if i.name == "o2_flat_line")
    assert info.runbook == "https://docs.example.org/ct/runbooks.md#o2_flat_line"
