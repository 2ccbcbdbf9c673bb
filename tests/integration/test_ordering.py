"""Reordered streams against real services: mosquitto or NATS (MQTT 3.1.1) -> pipeline -> InfluxDB 1.x.

What MQTT really delivers (issue 13): after a reconnect paho sends new PUBLISHes before it re-sends its
unacknowledged ones, and a store-and-forward gateway sends its live reading before its backlog. Every
such reading was never seen and must land; completeness must end at 1.0; a replay must still be refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from simulators.district import DistrictSimulator, Pacing, SimMessage

from citytelemetry.config import InfluxSettings
from citytelemetry.ingest.factory import open_source
from citytelemetry.profiles import Catalog
from tests.conftest import MqttBroker, influx_query

from .pipeline_harness import pipeline_settings, running_pipeline, shipped_catalog, wait_for

pytestmark = pytest.mark.integration
WAIT_S = 30.0


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return shipped_catalog()


def device_streams(catalog: Catalog, prefix: str, *, devices: int, per_device: int) -> dict[str, list[SimMessage]]:
    """Fault-free single-reading messages, in seq order, per device."""
    sim = DistrictSimulator(catalog, seed=13, duration_s=None, max_messages=devices * per_device,
                            pacing=Pacing(speed=0), systems=["station"], max_devices=devices, topic_prefix=prefix)
    streams: dict[str, list[SimMessage]] = defaultdict(list)
    for message in sim.messages():
        assert not message.faults
        streams[message.device_id].append(message)
    return streams


class Publisher:
    """paho at QoS 1, in the order given, each PUBLISH acknowledged by the broker before the next."""

    def __init__(self, broker: MqttBroker, *, v5: bool = True) -> None:
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=f"ct-order-{uuid.uuid4().hex[:8]}",
                                   protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()

    def publish(self, messages: list[SimMessage]) -> None:
        for message in messages:
            info = self._client.publish(message.topic, message.payload, qos=1)
            info.wait_for_publish(10)
            assert info.is_published()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def landed(influx_url: str, db: str, catalog: Catalog, device_id: str) -> list[int]:
    measurement = catalog.devices[device_id].profile.type
    series = influx_query(influx_url, db, f"SELECT seq FROM \"{measurement}\" WHERE device = '{device_id}'")
    return sorted(seq for _, seq in series[0]["values"]) if series else []


def reorder(stream: list[SimMessage], how: str, rng: random.Random) -> Iterator[SimMessage]:
    if how == "retransmit":  # 10 new ones before the 10 unacknowledged ones, as paho after a reconnect
        yield from stream[10:20]
        yield from stream[:10]
        yield from stream[20:]
    elif how == "backlog":  # the live reading first, then the backlog, oldest first
        yield stream[-1]
        yield from stream[:-1]
    else:  # shuffled
        yield from rng.sample(stream, len(stream))


async def test_a_reordered_stream_lands_completely_and_replays_are_still_refused(
        mosquitto: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str, catalog: Catalog) -> None:
    streams = device_streams(catalog, mqtt_topic_prefix, devices=3, per_device=80)
    assert min(len(stream) for stream in streams.values()) > 20
    orders = dict(zip(streams, ["retransmit", "backlog", "shuffle"], strict=True))
    rng = random.Random(7)
    sent = [m for device_id, how in orders.items() for m in reorder(streams[device_id], how, rng)]
    replays = [streams[device_id][5] for device_id in streams]  # seen once already: duplicates
    influx = InfluxSettings(url=influxdb, database=influx_db_name)
    settings = pipeline_settings(mosquitto.url, mqtt_topic_prefix, influx)
    publisher = Publisher(mosquitto)
    try:
        async with running_pipeline(settings, catalog) as pipeline:
            await asyncio.to_thread(publisher.publish, sent)
            await asyncio.to_thread(publisher.publish, replays)
            total = len(sent) + len(replays)
            await wait_for(lambda: pipeline.stats.messages_settled >= total, WAIT_S, f"{total} settled")
            assert dict(pipeline.stats.rejections) == {"duplicate_sequence": len(replays)}
            for device_id, counts in pipeline.completeness.devices().items():
                size = len(streams[device_id])
                assert (counts.total_received, counts.expected, counts.duplicates) == (size, size, 1), device_id
            assert pipeline.completeness.devices()[next(iter(streams))].out_of_order == 10
    finally:
        publisher.close()
    for device_id, stream in streams.items():
        seqs = [int(m.payload.split(b'"seq":')[1].split(b",")[0]) for m in stream]
        assert landed(influxdb, influx_db_name, catalog, device_id) == sorted(seqs)


async def test_the_3_1_1_path_acknowledges_only_after_durable_and_lands_exactly(
        nats_mqtt: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str,
        catalog: Catalog) -> None:
    """On NATS (MQTT 3.1.1 only): with no spool and no InfluxDB nothing is acknowledged, so the session
    still holds every message; with InfluxDB back the same session lands them exactly once."""
    streams = device_streams(catalog, mqtt_topic_prefix, devices=2, per_device=15)
    sent = [m for stream in streams.values() for m in stream]
    unreachable = InfluxSettings(url="http://127.0.0.1:9", database=influx_db_name, timeout_s=0.5)
    down = pipeline_settings(nats_mqtt.url, mqtt_topic_prefix, unreachable, spool_dir=None, shutdown_timeout_s=1.0)
    publisher = Publisher(nats_mqtt, v5=False)
    try:
        async with running_pipeline(down, catalog) as pipeline:
            await asyncio.to_thread(publisher.publish, sent)
            await wait_for(lambda: pipeline.stats.messages_received >= len(sent), WAIT_S, "all received")
            assert pipeline.stats.messages_settled == 0
            assert pipeline.handler.source is not None
            assert pipeline.handler.source.version == "3.1.1"
        # The session holds them all: a plain source under the same client id is handed every one again.
        async with open_source(down.mqtt, connect_timeout_s=10) as source:
            again: set[bytes] = set()

            async def collect() -> None:
                async for message in source.messages():
                    again.add(message.payload)
                    if len(again) == len(sent):
                        return

            await asyncio.wait_for(collect(), WAIT_S)
        assert again == {m.payload for m in sent}

        up = down.model_copy(update={"influx": InfluxSettings(url=influxdb, database=influx_db_name)})
        async with running_pipeline(up, catalog) as pipeline:
            await wait_for(lambda: sum(len(landed(influxdb, influx_db_name, catalog, d)) for d in streams) == len(sent),
                           WAIT_S, f"{len(sent)} points in InfluxDB")
            assert pipeline.stats.rejections.total() == 0
    finally:
        publisher.close()
    for device_id, stream in streams.items():
        assert len(landed(influxdb, influx_db_name, catalog, device_id)) == len(stream)


async def test_a_restart_keeps_completeness_and_duplicate_detection(
        mosquitto: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str, catalog: Catalog,
        tmp_path: Path) -> None:
    streams = device_streams(catalog, mqtt_topic_prefix, devices=2, per_device=40)
    first_half = {d: s[:len(s) // 2] for d, s in streams.items()}
    second_half = {d: s[len(s) // 2:] for d, s in streams.items()}
    influx = InfluxSettings(url=influxdb, database=influx_db_name)
    settings = pipeline_settings(mosquitto.url, mqtt_topic_prefix, influx, checkpoint_file=tmp_path / "state.ckpt")
    publisher = Publisher(mosquitto)
    try:
        async with running_pipeline(settings, catalog) as pipeline:
            sent = [m for s in first_half.values() for m in s]
            await asyncio.to_thread(publisher.publish, sent)
            await wait_for(lambda: pipeline.stats.messages_settled >= len(sent), WAIT_S, "first half settled")
        assert (tmp_path / "state.ckpt").is_file()

        async with running_pipeline(settings, catalog) as pipeline:  # the same instance, restarted
            replays = [s[3] for s in first_half.values()]  # seen before the restart
            rest = [m for s in second_half.values() for m in s]
            await asyncio.to_thread(publisher.publish, replays + rest)
            total = len(replays) + len(rest)
            await wait_for(lambda: pipeline.stats.messages_settled >= total, WAIT_S, "second half settled")
            assert dict(pipeline.stats.rejections) == {"duplicate_sequence": len(replays)}
            for device_id, counts in pipeline.completeness.devices().items():
                size = len(streams[device_id])
                assert (counts.total_received, counts.expected, counts.duplicates) == (size, size, 1), device_id
    finally:
        publisher.close()


async def test_three_partitioned_members_land_a_shuffled_stream_once_with_every_device_complete(
        mosquitto: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str, catalog: Catalog) -> None:
    streams = device_streams(catalog, mqtt_topic_prefix, devices=9, per_device=20)
    rng = random.Random(11)
    sent = rng.sample([m for s in streams.values() for m in s], sum(len(s) for s in streams.values()))
    replays = [s[2] for s in streams.values()]
    influx = InfluxSettings(url=influxdb, database=influx_db_name)
    members = [pipeline_settings(mosquitto.url, mqtt_topic_prefix, influx, partition=f"{k}/3") for k in (1, 2, 3)]
    publisher = Publisher(mosquitto)
    try:
        async with contextlib.AsyncExitStack() as stack:
            pipelines = [await stack.enter_async_context(running_pipeline(s, catalog)) for s in members]
            await asyncio.to_thread(publisher.publish, sent + replays)
            total = len(sent) + len(replays)
            await wait_for(lambda: sum(p.stats.messages_settled for p in pipelines) >= total, WAIT_S,
                           f"{total} settled across the members")
            owners: dict[str, int] = {}
            for k, pipeline in enumerate(pipelines, 1):
                for device_id, counts in pipeline.completeness.devices().items():
                    assert device_id not in owners, f"{device_id} counted by members {owners[device_id]} and {k}"
                    owners[device_id] = k
                    size = len(streams[device_id])
                    assert (counts.total_received, counts.expected, counts.duplicates) == (size, size, 1)
            assert set(owners) == set(streams)
            assert sum(p.stats.rejections["duplicate_sequence"] for p in pipelines) == len(replays)
            assert sum(p.stats.messages_received for p in pipelines) == total  # nothing delivered twice
    finally:
        publisher.close()
    for device_id, stream in streams.items():
        assert len(landed(influxdb, influx_db_name, catalog, device_id)) == len(stream)
