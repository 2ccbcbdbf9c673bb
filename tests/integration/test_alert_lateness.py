"""No false staleness alerts from the pipeline's own lateness (issue 15, item 4), against real services.

The pipeline hears every device once, goes down while the devices keep reporting, and comes back to a
backlog that two gateways delivered one after the other: all of gateway A's outage, then all of B's. While
the backlog drains, event time has already reached the end of A's outage while B's devices have not been
read since it began: judged at a tick during the drain, every B device would look silent for the whole
outage. The drain outlasts several evaluation ticks (held, counted); no device_offline reaches
Alertmanager. Then every device but one reports live, and that one, really silent, fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from simulators.values import DeviceModel

from citytelemetry.profiles import Catalog
from citytelemetry.topics import telemetry_topic
from tests.conftest import MqttBroker

from .alerting.harness import Bench, alert_settings, alertmanager_with_webhook, running
from .pipeline_harness import shipped_catalog, wait_for

pytestmark = pytest.mark.integration
COMPARTMENTS = ("c001", "c002", "c003", "c004", "c005", "c006")
# The outage, in device time: three hours, so that the backlog's drain outlasts several ticks however fast
# the pipeline gets (one hour drained in 0.05 s after issue 15's hot-path work: under 3 ticks of 20 ms).
SPAN_MS = 3 * 3_600_000
EVALUATION_S = 0.02  # short, so that even a fast drain outlasts several ticks
SILENT = "tun-c001-gas1"  # multigas: every 10 s, device_offline after 30 s


def _catalog() -> Catalog:
    full = shipped_catalog()
    keep = {k: v for k, v in full.devices.items() if v.location.get("compartment") in COMPARTMENTS}
    return Catalog(profiles=full.profiles, devices=keep)


class _Devices:
    """Each device's own realistic values (the simulator's model) and its sequence numbers."""

    def __init__(self, catalog: Catalog, prefix: str) -> None:
        self.catalog, self.prefix = catalog, prefix
        self.ids = sorted(catalog.devices)
        self.models = {d: DeviceModel(catalog.devices[d].profile, 7, d) for d in self.ids}
        self.seq = dict.fromkeys(self.ids, 0)
        self.last_ts = dict.fromkeys(self.ids, 0)

    def interval_ms(self, device_id: str) -> int:
        return round(self.catalog.devices[device_id].profile.reporting_interval_s * 1000)

    def message(self, device_id: str, ts_ms: int) -> tuple[str, bytes]:
        device = self.catalog.devices[device_id]
        self.seq[device_id] += 1
        ts_ms = self.last_ts[device_id] = max(ts_ms, self.last_ts[device_id] + 1000)  # live after a backlog
        body = {"device": device_id, "seq": self.seq[device_id], "ts": ts_ms,
                "values": self.models[device_id].sample(ts_ms)}
        return telemetry_topic(device.site, device.system.value, device_id, self.prefix), orjson.dumps(body)

    def stream(self, ids: list[str], start_ms: int, end_ms: int) -> list[tuple[str, bytes]]:
        """These devices at their own cadence over [start, end), in device-time order (one gateway)."""
        due = sorted((start_ms + k * self.interval_ms(d), d) for d in ids
                     for k in range(1, (end_ms - start_ms) // self.interval_ms(d) + 1))
        return [self.message(d, ts) for ts, d in due]


def _publish(url_host: str, port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"gw-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.connect(url_host, port)
    client.loop_start()
    try:
        infos = [client.publish(topic, body, qos=1) for topic, body in messages]
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()


async def _live(devices: _Devices, broker: MqttBroker, stop: asyncio.Event) -> None:
    """Every device but ``SILENT`` reports now, every 2 s, until ``stop``."""
    while not stop.is_set():
        now = int(time.time() * 1000)
        batch = [devices.message(d, now) for d in devices.ids if d != SILENT]
        await asyncio.to_thread(_publish, broker.host, broker.port, batch)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2.0)


def _offline_pages(bench: Bench) -> set[tuple[str, str]]:
    return {(status, subject) for _r, status, name, _s, subject in bench.webhook.pages() if name == "device_offline"}


async def _scenario(tmp: Path, broker: MqttBroker, influx_url: str) -> None:
    catalog = _catalog()
    tag = uuid.uuid4().hex[:12]
    prefix = f"test/{tag}"
    devices = _Devices(catalog, prefix)
    async with alertmanager_with_webhook(tmp) as (am_url, webhook):
        settings = alert_settings(tmp, broker.url, prefix, influx_url, f"test_{tag}", am_url,
                                  evaluation_interval_s=EVALUATION_S)
        bench = Bench(settings, catalog, webhook, am_url, broker.url)
        end_ms = int(time.time() * 1000) + 60_000  # ahead of the clock (allowed: 300 s), so the drain ends "now"
        start_ms = end_ms - SPAN_MS
        first = [devices.message(d, start_ms) for d in devices.ids]
        async with running(bench) as pipeline:  # every device heard once; then the outage
            await asyncio.to_thread(_publish, broker.host, broker.port, first)
            await wait_for(lambda: pipeline.stats.messages_settled >= len(first), 30, "first readings settled")
        half = len(devices.ids) // 2
        backlog = (devices.stream(devices.ids[:half], start_ms, end_ms)
                   + devices.stream(devices.ids[half:], start_ms, end_ms))
        await asyncio.to_thread(_publish, broker.host, broker.port, backlog)

        async with running(bench) as pipeline:
            engine = bench.engine
            assert engine is not None
            drain_started = time.monotonic()
            await wait_for(lambda: pipeline.stats.messages_settled >= len(backlog), 120, "backlog drained")
            drain_s = time.monotonic() - drain_started
            held = engine.held_ticks
            stop = asyncio.Event()
            live = asyncio.create_task(_live(devices, broker, stop))
            try:
                await wait_for(lambda: ("firing", SILENT) in _offline_pages(bench), 90, f"{SILENT} offline page")
                await asyncio.sleep(2.5)  # > group_interval: anything else in flight arrives now
            finally:
                stop.set()
                await live

    # Nothing fired from our lateness; the device that really went silent did.
    assert sorted(_offline_pages(bench)) == [("firing", SILENT)]
    # The drain outlasted several evaluation ticks, and they were held rather than judged.
    assert drain_s > 3 * EVALUATION_S, drain_s
    assert held >= 3, (held, drain_s)
    assert len(backlog) > 2 * settings.mqtt.receive_maximum


def test_a_drain_across_many_ticks_raises_no_staleness_and_real_silence_still_fires(
        tmp_path: Path, mosquitto: MqttBroker, influxdb: str) -> None:
    asyncio.run(_scenario(tmp_path, mosquitto, influxdb))
