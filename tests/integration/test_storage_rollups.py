"""Rollups computed by the running pipeline equal the InfluxQL aggregate over the raw data, exactly.

Real mosquitto, real influxd, the real pipeline (spool on: the barrier waits for the spool to drain).
Readings go through MQTT; some arrive late (into windows already computed, and two hours back); the
pipeline is stopped while windows are still open and started again on the same checkpoint, with
recomputation of recent windows off so that only the checkpointed marks can bring them back. Then every
window of every tier and aggregate is compared with ``min/max/mean/last/count GROUP BY time(window), *``
over the raw data: the same windows, the same values.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citytelemetry.config import InfluxSettings, StorageSettings
from citytelemetry.run import Pipeline
from citytelemetry.storage.retention import apply_v1
from citytelemetry.storage.rollup import window_statement
from citytelemetry.storage.schema import Aggregate, rollup_measurement, rollup_schema
from citytelemetry.storage.tiers import rollup_tiers
from tests.conftest import MqttBroker, influx_query

from .pipeline_harness import pipeline_settings, running_pipeline, shipped_catalog, wait_for

pytestmark = pytest.mark.integration
FIVE, HOUR = 300_000, 3_600_000  # the default tiers: rollup_5m, rollup_1h
GAS, FAN = "tun-c001-gas1", "tun-c001-fan"


class Devices:
    """Publishes readings of two tunnel devices (QoS 1) and remembers their sequence numbers."""

    def __init__(self, broker: MqttBroker, prefix: str) -> None:
        self.prefix = prefix
        self.seq = {GAS: 0, FAN: 0}
        self.sent = 0
        self.stamps: list[tuple[str, int]] = []  # (device, ts) of every reading sent
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"ct-test-dev-{uuid.uuid4().hex[:8]}")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, device: str, ts_ms: int, k: int) -> None:
        self.seq[device] += 1
        values: dict[str, Any] = (
            {"o2": 20.5 + (k % 7) / 10, "h2s": (k % 5) / 4, "ch4": 1.0, "co": k % 3 + 0.25,
             "sensor_state": "ok" if k % 4 else "calibrating"} if device == GAS else
            {"state": "on" if k % 3 else "off", "frequency": 40.0 + k % 9, "current": 10 + (k % 4) * 0.5,
             "remote": k % 2 == 0, "fire_interlock": False})
        body = {"device": device, "seq": self.seq[device], "ts": ts_ms, "values": values}
        topic = f"{self.prefix}/hunnan/tunnel/{device}/telemetry"
        self.client.publish(topic, json.dumps(body), qos=1).wait_for_publish(10)
        self.sent += 1
        self.stamps.append((device, ts_ms))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _rows(url: str, db: str, statement: str, fields: set[str] | None = None) -> dict[tuple[Any, ...], dict[str, Any]]:
    """(time, device) -> {field: value} of the rows of ``statement`` (SELECT * with the tags), nulls left out."""
    out = {}
    for s in influx_query(url, db, statement):
        for row in s["values"]:
            record = dict(zip(s["columns"], row, strict=True))
            out[(record["time"], record["device"])] = {
                k: v for k, v in record.items() if v is not None and k not in {"time", "device"}
                and (fields is None or k in fields)}
    return out


def _compare_everything(url: str, db: str, start_ms: int, end_ms: int) -> int:
    """Every tier x aggregate x window: the rollup points equal the InfluxQL aggregate. Returns windows compared."""
    catalog = shipped_catalog()
    schema = rollup_schema(catalog)
    compared = 0
    for tier in rollup_tiers(StorageSettings()):
        for measurement in ("tunnel_multigas", "tunnel_fan"):
            rollup = schema[measurement]
            statement = window_statement(rollup, tier, start_ms, end_ms, raw_rp="autogen")
            expected: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
            for s in influx_query(url, db, statement):
                for row in s["values"]:
                    for (f, aggregate), value in zip(rollup.columns(), row[1:], strict=True):
                        if value is not None:
                            expected.setdefault(aggregate.value, {}).setdefault(
                                (row[0], s["tags"]["device"]), {})[f.name] = value
            for aggregate, windows in expected.items():
                name = rollup_measurement(measurement, Aggregate(aggregate))
                actual = _rows(url, db, f'SELECT * FROM "{tier.name}"."{name}" '
                                        f"WHERE time >= {start_ms}ms AND time < {end_ms}ms",
                               {f.name for f in rollup.fields})
                assert actual == windows, f"{tier.name} {name}"
                compared += len(windows)
    return compared


async def test_rollups_equal_the_raw_aggregate_through_late_readings_and_a_restart(
        mosquitto: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str, tmp_path: Path) -> None:
    influx = InfluxSettings(url=influxdb, database=influx_db_name)
    settings = pipeline_settings(mosquitto.url, mqtt_topic_prefix, influx)
    storage = StorageSettings(interval_s=0.2, grace_s=0, recompute_windows=0,
                              checkpoint_file=tmp_path / "rollup-windows.json")
    settings = settings.model_copy(update={"storage": storage})
    apply_v1(storage, influx)
    catalog = shipped_catalog()
    devices = Devices(mosquitto, mqtt_topic_prefix)
    real_now = time.time_ns() // 1_000_000
    five = real_now - real_now % FIVE
    hour = real_now - real_now % HOUR
    clock = {"now": real_now}  # the rollup task's view of time: windows from `five` on stay open

    def attach(pipeline: Pipeline) -> None:
        assert pipeline.rollups is not None
        pipeline.rollups.clock_ms = lambda: clock["now"]

    async def settled(pipeline: Pipeline) -> None:
        await wait_for(lambda: pipeline.stats.messages_settled >= devices.sent - sent_before, 30, "messages settled")

    try:
        async with running_pipeline(settings, catalog) as first:
            attach(first)
            sent_before = 0
            for k in range(24):  # four closed 5-minute windows and the open one, a minute apart
                for device in (GAS, FAN):
                    await asyncio.to_thread(devices.send, device, five - 4 * FIVE + k * 60_000 + 7, k)
            await settled(first)
            await wait_for(lambda: _rows(influxdb, influx_db_name, 'SELECT * FROM "rollup_5m"."tunnel_fan_count"'),
                           30, "the first closed windows rolled up")
            # Late: into a window already computed, and two hours back (an hour window of its own).
            for k in range(3):
                await asyncio.to_thread(devices.send, GAS, five - 4 * FIVE + 1_000 + k * 3_000, 100 + k)
                await asyncio.to_thread(devices.send, FAN, hour - 2 * HOUR + FIVE + k * 61_000, 200 + k)
            await settled(first)
            late = (five - 4 * FIVE, GAS)
            await wait_for(lambda: _rows(influxdb, influx_db_name, 'SELECT "o2", "device" FROM "rollup_5m".'
                                         '"tunnel_multigas_count"').get(late) == {"o2": 8}, 30, "the late window")
            assert pipeline_windows_open(first) > 0  # stopped mid-window: the open window and hour are pending
        sent_before = devices.sent
        async with running_pipeline(settings, catalog) as second:
            attach(second)
            for k in range(3):  # the open window goes on after the restart, for one device only
                await asyncio.to_thread(devices.send, FAN, five + 30_000 + k * 5_000, 300 + k)
            await settled(second)
            assert second.rollups is not None
            task = second.rollups
            clock["now"] = real_now + 2 * HOUR  # every window closed
            cycles = task.cycles + 1  # the one running now may have taken its marks before the clock moved
            await wait_for(lambda: task.cycles > cycles and len(task.windows) == 0, 30, "every window rolled up")
    finally:
        devices.close()
    compared = _compare_everything(influxdb, influx_db_name, hour - 3 * HOUR, real_now + HOUR)
    # Every window that got a reading, in each of the five aggregate measurements of its type.
    windows = {(w, device, ts - ts % w) for device, ts in devices.stamps for w in (FIVE, HOUR)}
    assert compared == len(windows) * 5
    gas_open = _rows(influxdb, influx_db_name, 'SELECT "o2", "device" FROM "rollup_5m"."tunnel_multigas_count"')
    assert gas_open[(five, GAS)] == {"o2": 4}  # only the checkpoint could bring this window back


def pipeline_windows_open(pipeline: Pipeline) -> int:
    assert pipeline.rollups is not None
    return len(pipeline.rollups.windows)
