"""Alerting test bench: a loopback webhook receiver, an Alertmanager routed to it, and the real
pipeline with the alert evaluator, fed by the district simulator.

    async with alert_bench(tmp, mosquitto, influxdb) as bench:
        await bench.run_simulation(sim)          # publish, settle, wait for the expected pages
        bench.webhook.pages()                    # {(receiver, status, alertname, severity, who), ...}
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from simulators.district import DistrictSimulator, Summary, publish

from citytelemetry.alerts import build_evaluator
from citytelemetry.alerts.evaluator import AlertEngine
from citytelemetry.config import AlertmanagerSettings, AlertSettings, InfluxSettings, Settings
from citytelemetry.profiles import Catalog
from citytelemetry.run import Pipeline, build_pipeline
from citytelemetry.services import ManagedService, definitions, free_port, port_is_free
from tests.integration.pipeline_harness import ROOT, pipeline_settings, wait_for

SHIPPED = ROOT / "deploy" / "alertmanager.yml"
# Timings for tests that are about what is paged, not when: every route's grouping shortened to 1 s.
# Routes, group keys, receivers' send_resolved and inhibition stay the shipped ones (the shipped
# timings are asserted in tests/unit/test_alertmanager_config.py and used as shipped where timing matters).
FAST = {"group_wait": "1s", "group_interval": "1s"}
Page = tuple[str, str, str, str, str]  # receiver, status, alertname, severity, who (device or group)


def who(labels: dict[str, str]) -> str:
    """The device of a device alert; "compartment c002" / "unit chp1" / the site for the others."""
    if labels.get("device"):
        return labels["device"]
    for key in ("compartment", "unit", "node"):
        if labels.get(key):
            return f"{key} {labels[key]}"
    return f"{labels.get('site', '?')} {labels.get('system', '?')}"


@dataclass
class Webhook:
    """Records every notification Alertmanager sends (one entry per alert of each notification)."""

    notifications: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{receiver}", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["_path"] = request.match_info["receiver"]
        body["_at"] = time.monotonic()
        self.notifications.append(body)
        return web.Response(status=200)

    def pages(self, status: str | None = None) -> set[Page]:
        out = set()
        for n in self.notifications:
            for alert in n["alerts"]:
                labels = alert["labels"]
                page = (n["receiver"], alert["status"], labels["alertname"], labels["severity"], who(labels))
                if status is None or alert["status"] == status:
                    out.add(page)
        return out


@dataclass
class Bench:
    settings: Settings
    catalog: Catalog
    webhook: Webhook
    alertmanager_url: str
    mqtt_url: str
    pipeline: Pipeline | None = None
    engine: AlertEngine | None = None

    def new_pipeline(self) -> Pipeline:
        def factory(emit: Callable[[Any], None]) -> Any:
            self.engine = build_evaluator(self.settings, self.catalog, emit)  # type: ignore[assignment]
            return self.engine

        self.pipeline = build_pipeline(self.settings, self.catalog, evaluator_factory=factory)
        return self.pipeline

    async def publish(self, sim: DistrictSimulator) -> Summary:
        assert self.pipeline is not None
        summary = await asyncio.to_thread(publish, sim, self.mqtt_url, client_id=f"ct-alert-sim-{uuid.uuid4().hex[:8]}")
        total = summary.messages_sent + summary.status_messages
        pipeline = self.pipeline
        await wait_for(lambda: pipeline.stats.messages_settled >= total, 60,
                       f"{total} messages settled (now {pipeline.stats.messages_settled})")
        return summary

    async def wait_pages(self, expected: set[Page], timeout_s: float = 20.0) -> None:
        """Until every expected page has arrived (then a little longer, to catch unexpected late ones)."""
        deadline = time.monotonic() + timeout_s
        while not expected <= self.webhook.pages() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)  # > group_interval: anything else in flight arrives now


def render_alertmanager_config(directory: Path, webhook_url: str, timings: dict[str, str] | None = None) -> Path:
    """deploy/alertmanager.yml with its receivers pointed at the test webhook (same path: /pager, /chat)
    and, when ``timings`` is given, those keys set on the root route and every child route."""
    config = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"{webhook_url}/{receiver['name']}"
    if timings:
        for route in [config["route"], *config["route"].get("routes", [])]:
            for key in timings.keys() & route.keys():
                route[key] = timings[key]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return directory


@dataclass
class Alertmanager:
    """A real Alertmanager that can be restarted, with its data dir (notification log, silences) or without."""

    service: ManagedService
    data_dir: Path

    @property
    def url(self) -> str:
        return self.service.url

    async def restart(self, *, keep_data: bool) -> None:
        await asyncio.to_thread(self.service.stop)
        port = self.service.spec.ports[0]
        await wait_for(lambda: port_is_free(port), 15, f"port {port} released by the stopped Alertmanager")
        if not keep_data:
            shutil.rmtree(self.data_dir)
            self.data_dir.mkdir()
        await asyncio.to_thread(self.service.start)


@asynccontextmanager
async def alertmanager_process(tmp: Path, port: int | None = None,
                               timings: dict[str, str] | None = FAST) -> AsyncIterator[tuple[Alertmanager, Webhook]]:
    webhook = Webhook()
    await webhook.start()
    templates = render_alertmanager_config(tmp / "am-config", webhook.url, timings)
    spec = definitions.alertmanager(tmp / "am-run", port or free_port(), templates=templates)
    service = ManagedService(spec)
    await asyncio.to_thread(service.start)
    try:
        yield Alertmanager(service, spec.home / "data"), webhook
    finally:
        await asyncio.to_thread(service.stop)
        await webhook.stop()


@asynccontextmanager
async def alertmanager_with_webhook(tmp: Path, port: int | None = None,
                                    timings: dict[str, str] | None = FAST) -> AsyncIterator[tuple[str, Webhook]]:
    async with alertmanager_process(tmp, port, timings) as (am, webhook):
        yield am.url, webhook


def alert_settings(tmp: Path, mqtt_url: str, topic_prefix: str, influx_url: str, db: str, am_url: str,
                   **alerts: Any) -> Settings:
    settings = pipeline_settings(mqtt_url, topic_prefix, InfluxSettings(url=influx_url, database=db))
    options: dict[str, Any] = {"rules_dir": ROOT / "alert_rules", "state_file": tmp / "alert-state.json",
                               "evaluation_interval_s": 0.25, "resend_interval_s": 2.0, "request_timeout_s": 2.0}
    options.update(alerts)
    return settings.model_copy(update={"alertmanager": AlertmanagerSettings(url=am_url),
                                       "alerts": AlertSettings(**options)})


@asynccontextmanager
async def running(bench: Bench) -> AsyncIterator[Pipeline]:
    pipeline = bench.new_pipeline()
    task = asyncio.create_task(pipeline.run())
    try:
        await wait_for(lambda: pipeline.stats.mqtt_connected, 10, "pipeline connected")
        yield pipeline
    finally:
        pipeline.stop()
        await asyncio.wait_for(task, 30)
