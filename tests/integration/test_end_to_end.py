"""Simulator -> mosquitto -> pipeline -> InfluxDB 1.x, all real: exact counts, every reject, round trips."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from simulators.district import DistrictSimulator, Pacing, SimMessage
from simulators.faults import FAULT_REASONS

from citytelemetry.config import InfluxSettings
from citytelemetry.profiles import Catalog
from citytelemetry.profiles.models import ValueType
from tests.conftest import MqttBroker, influx_query

from .pipeline_harness import pipeline_settings, publish_and_settle, running_pipeline, shipped_catalog

pytestmark = pytest.mark.integration

FAULTS = {str(reason): 2 for reason in FAULT_REASONS}  # K = 24, two of every kind the simulator makes
INFLUX_TYPES = {ValueType.FLOAT: "float", ValueType.INT: "integer", ValueType.BOOL: "boolean",
                ValueType.ENUM: "string"}


class DeadLetterListener:
    """Subscribes to the dead-letter topics with paho and keeps every notice."""

    def __init__(self, broker: MqttBroker, prefix: str) -> None:
        self.notices: list[dict[str, Any]] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self._client.on_message = lambda c, u, m: self.notices.append(json.loads(m.payload))
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._client.subscribe(f"{prefix}/deadletter/#", qos=1)
        self._client.loop_start()
        assert self._subscribed.wait(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _count_points(influx_url: str, db: str, catalog: Catalog) -> Counter[str]:
    counts: Counter[str] = Counter()
    for series in influx_query(influx_url, db, "SELECT count(seq) FROM " + ",".join(
            f'"{t}"' for t in sorted(catalog.profiles))):
        counts[series["name"]] = series["values"][0][1]
    return counts


def _rejects(influx_url: str, db: str) -> Counter[tuple[str, str, int | None, str | None]]:
    [series] = influx_query(influx_url, db, 'SELECT reason, topic, seq, "field" FROM ct_rejects')
    return Counter((r, topic, seq, fld) for _, r, topic, seq, fld in series["values"])


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return shipped_catalog()


async def test_simulated_district_lands_exactly_with_every_reject_dead_lettered(
        mosquitto: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str, catalog: Catalog) -> None:
    influx = InfluxSettings(url=influxdb, database=influx_db_name)
    settings = pipeline_settings(mosquitto.url, mqtt_topic_prefix, influx)
    sim = DistrictSimulator(catalog, seed=11, duration_s=None, max_messages=3000, pacing=Pacing(speed=0),
                            faults=FAULTS, topic_prefix=mqtt_topic_prefix)
    listener = DeadLetterListener(mosquitto, mqtt_topic_prefix)
    try:
        async with running_pipeline(settings, catalog) as pipeline:
            summary = await publish_and_settle(pipeline, sim, mosquitto.url)
    finally:
        listener.close()

    k = sum(FAULTS.values())
    assert summary.messages_sent > 3000
    assert {s.points for s in summary.per_system.values()} != {0}
    assert set(summary.per_system) == {"tunnel", "station", "network"}
    # N - K: every valid reading is exactly one point, per device type.
    assert _count_points(influxdb, influx_db_name, catalog) == Counter(summary.points_by_type)
    assert sum(pipeline.stats.readings_landed.values()) == summary.expected_points
    # Each of the K rejects is dead-lettered with its reason, topic, seq and field.
    expected = Counter((f.reason, f.topic, f.seq, f.field) for f in summary.faults)
    assert len(summary.faults) == k
    assert _rejects(influxdb, influx_db_name) == expected
    assert dict(pipeline.stats.rejections) == FAULTS
    assert Counter((n["reason"], n["topic"], n["seq"], n["field"]) for n in listener.notices) == expected


async def test_values_types_and_timestamps_round_trip_exactly(
        mosquitto: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str, catalog: Catalog) -> None:
    influx = InfluxSettings(url=influxdb, database=influx_db_name)
    settings = pipeline_settings(mosquitto.url, mqtt_topic_prefix, influx)
    sim = DistrictSimulator(catalog, seed=5, duration_s=None, max_messages=400, pacing=Pacing(speed=0),
                            systems=["station", "network"], topic_prefix=mqtt_topic_prefix, batch=3)
    async with running_pipeline(settings, catalog) as pipeline:
        await publish_and_settle(pipeline, sim, mosquitto.url)

    sample: list[SimMessage] = [m for m in sim.messages() if not m.faults][::25]
    assert len(sample) >= 10
    for message in sample:
        body = json.loads(message.payload)
        device = catalog.devices[body["device"]]
        for reading in body["readings"]:
            [series] = influx_query(influxdb, influx_db_name, f'SELECT * FROM "{device.profile.type}" '
                                    f"WHERE device = '{device.id}' AND time = {reading['ts']}ms")
            row = dict(zip(series["columns"], series["values"][0], strict=True))
            assert row["time"] == reading["ts"]
            assert row["seq"] == reading["seq"]
            assert {k: row[k] for k in reading["values"]} == reading["values"]
            assert {k: row[k] for k in device.location} == dict(device.location)
            assert (row["site"], row["system"]) == (device.site, device.system.value)
    # Field types are the profile's: ints stay ints, no type conflicts.
    for type_name in {catalog.devices[json.loads(m.payload)["device"]].profile.type for m in sample}:
        profile = catalog.profiles[type_name]
        [series] = influx_query(influxdb, influx_db_name, f'SHOW FIELD KEYS FROM "{type_name}"')
        declared = dict(series["values"])
        assert declared == {"seq": "integer"} | {k: INFLUX_TYPES[m.value_type]
                                                 for k, m in profile.measurements.items()}
