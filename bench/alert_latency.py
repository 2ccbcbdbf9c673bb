"""Alert latency and rule cost: ``.venv/bin/python bench/alert_latency.py [--seconds 20] [--rates 1000,10000]``.

1. Latency from MQTT publish to Alertmanager receipt, under background load (the district simulator at
   R readings/s through the real pipeline: mosquitto, influxd, Alertmanager started here on free ports).
   Every 0.25 s a probe device (not in the load) publishes CH4 = 30 %LEL, a critical that fires at once;
   Alertmanager's API is polled every 5 ms for it. Latency = first seen - publish (±5 ms). p50, p99.
2. Rule evaluation cost per reading: the whole district's readings through ``AlertEngine.observe``
   (no validation, no I/O), in microseconds per reading.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

import aiohttp  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from simulators.district import DistrictSimulator, Pacing, publish  # noqa: E402

from citytelemetry.alerts import build_evaluator  # noqa: E402
from citytelemetry.alerts.evaluator import AlertEngine  # noqa: E402
from citytelemetry.config import (  # noqa: E402
    AlertmanagerSettings,
    AlertSettings,
    HttpSettings,
    InfluxSettings,
    MqttSettings,
    PipelineSettings,
    Settings,
)
from citytelemetry.profiles import Catalog, load_catalog  # noqa: E402
from citytelemetry.records import Reading  # noqa: E402
from citytelemetry.run import build_pipeline  # noqa: E402
from citytelemetry.services import ManagedService, definitions, free_port  # noqa: E402

PROBE_EVERY_S = 0.25
POLL_S = 0.005


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _catalog() -> Catalog:
    return load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")


def rule_cost(catalog: Catalog, seconds: float = 600) -> float:
    """Microseconds per reading of ``observe`` over the whole district's normal readings."""
    sim = DistrictSimulator(catalog, seed=1, duration_s=seconds, pacing=Pacing(speed=0))
    readings: list[Reading] = []
    for message in sim.messages():
        body = json.loads(message.payload)
        device = catalog.devices[body["device"]]
        readings.append(Reading(device.profile.type, device.id, device.tags, body["values"], body["ts"], body["seq"]))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(alerts=AlertSettings(rules_dir=ROOT / "alert_rules", state_file=Path(tmp) / "s.json"))
        clock = [readings[0].timestamp_ms / 1000]
        engine = AlertEngine(settings, catalog, lambda _lines: None, clock=lambda: clock[0])
        t0 = time.perf_counter()
        for reading in readings:
            engine.observe((reading,))
        elapsed = time.perf_counter() - t0
    return elapsed / len(readings) * 1e6


class Probe:
    """Publishes critical CH4 readings for devices outside the load, one new device per probe."""

    def __init__(self, mqtt_url: str, prefix: str, devices: list[str], catalog: Catalog) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4()}",
                                  protocol=mqtt.MQTTv5)
        host, port = mqtt_url.removeprefix("mqtt://").split(":")
        self.client.connect(host, int(port))
        self.client.loop_start()
        self.prefix, self.devices, self.catalog = prefix, devices, catalog
        self.sent: dict[str, float] = {}

    def fire(self, index: int) -> str:
        device = self.catalog.devices[self.devices[index]]
        topic = f"{self.prefix}/{device.site}/{device.system.value}/{device.id}/telemetry"
        body = {"device": device.id, "seq": 1, "ts": time.time_ns() // 1_000_000,
                "values": {"ch4": 30.0}}
        self.sent[device.id] = time.monotonic()
        self.client.publish(topic, json.dumps(body), qos=1)
        return device.id

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _watch(am_url: str, seen: dict[str, float], stop: asyncio.Event) -> None:
    query = {"filter": 'alertname="tunnel_multigas_ch4_high"', "active": "true", "inhibited": "true"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while not stop.is_set():
            async with session.get(f"{am_url}/api/v2/alerts", params=query) as response:
                for alert in await response.json():
                    seen.setdefault(alert["labels"].get("device", ""), time.monotonic())
            await asyncio.sleep(POLL_S)


async def latency(rate: float, seconds: float, services: dict[str, str], catalog: Catalog, tmp: Path,
                  probe_suffix: str) -> list[float]:
    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    probes = sorted(d for d in catalog.devices if d.endswith(probe_suffix))[: int(seconds / PROBE_EVERY_S) + 5]
    load = Catalog(catalog.profiles, {k: v for k, v in catalog.devices.items() if k not in set(probes)})
    batch = 1 if rate <= 2000 else 10  # 10k readings/s as 1k messages/s of 10 readings
    settings = Settings(
        mqtt=MqttSettings(url=services["mqtt"], topic_prefix=prefix, client_id=f"bench-{uuid.uuid4().hex[:8]}"),
        influx=InfluxSettings(url=services["influx"], database="bench_alerts"), http=HttpSettings(port=0),
        pipeline=PipelineSettings(profiles_dir=ROOT / "device_profiles" / "types",
                                  inventory_dir=ROOT / "device_profiles" / "inventory", flush_interval_s=0.2,
                                  spool_dir=tmp / "spool", deadletter_dir=tmp / "deadletters",
                                  checkpoint_file=tmp / "device-state.ckpt"),
        alertmanager=AlertmanagerSettings(url=services["alertmanager"]),
        alerts=AlertSettings(rules_dir=ROOT / "alert_rules", state_file=tmp / f"{prefix.replace('/', '_')}.json",
                             evaluation_interval_s=1.0))
    pipeline = build_pipeline(settings, catalog,
                              evaluator_factory=lambda emit: build_evaluator(settings, catalog, emit))
    run = asyncio.create_task(pipeline.run())
    while not pipeline.stats.mqtt_connected:  # noqa: ASYNC110 - polling a counter the pipeline owns
        await asyncio.sleep(0.05)
    sim = DistrictSimulator(load, seed=2, duration_s=None, max_messages=int(rate / batch * (seconds + 5)),
                            pacing=Pacing(rate=rate / batch), batch=batch, topic_prefix=prefix)
    stop_load = threading.Event()
    loader = asyncio.create_task(asyncio.to_thread(publish, sim, services["mqtt"], stop=stop_load, status=False))
    seen: dict[str, float] = {}
    stop_watch = asyncio.Event()
    watcher = asyncio.create_task(_watch(services["alertmanager"], seen, stop_watch))
    probe = Probe(services["mqtt"], prefix, probes, catalog)
    await asyncio.sleep(2.0)  # load running
    fired = []
    for i in range(int(seconds / PROBE_EVERY_S)):
        fired.append(probe.fire(i))
        await asyncio.sleep(PROBE_EVERY_S)
    await asyncio.sleep(2.0)
    stop_watch.set()
    stop_load.set()
    await asyncio.gather(watcher, loader, return_exceptions=True)
    probe.close()
    pipeline.stop()
    await run
    received = pipeline.stats.messages_received
    print(f"  load {rate:,.0f} readings/s: {received} messages received, {len(fired)} probes, "
          f"{sum(1 for d in fired if d in seen)} seen in Alertmanager")
    return [(seen[d] - probe.sent[d]) * 1000 for d in fired if d in seen]


def _services(run_dir: Path) -> tuple[list[ManagedService], dict[str, str]]:
    started = []
    urls = {}
    for key, spec in (("mqtt", definitions.mosquitto(run_dir, free_port())),
                      ("influx", definitions.influxd(run_dir, free_port())),
                      ("alertmanager", definitions.alertmanager(run_dir, free_port()))):
        service = ManagedService(spec)
        service.start()
        started.append(service)
        urls[key] = service.url
    return started, urls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="probing time per load level")
    parser.add_argument("--rates", default="1000,10000", help="background readings per second")
    args = parser.parse_args()
    catalog = _catalog()
    print(f"rule evaluation: {rule_cost(catalog):.1f} µs per reading "
          f"(whole district, {len(catalog.devices)} devices, observe() only)")
    with tempfile.TemporaryDirectory(prefix="ct-bench-alerts-") as tmp:
        services, urls = _services(Path(tmp))
        try:
            for index, rate in enumerate(float(r) for r in args.rates.split(",")):
                suffix = ("-gas1", "-gas2")[index % 2]  # fresh probe devices for each level (two levels)
                values = asyncio.run(latency(rate, args.seconds, urls, catalog, Path(tmp), suffix))
                if values:
                    print(f"  publish -> Alertmanager at {rate:,.0f} readings/s: "
                          f"p50 {_percentile(values, 0.5):.0f} ms, "
                          f"p99 {_percentile(values, 0.99):.0f} ms, max {max(values):.0f} ms, "
                          f"mean {statistics.fmean(values):.0f} ms (n={len(values)})")
        finally:
            for service in reversed(services):
                service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
