"""The whole path with security on: simulated devices with their own credentials over mqtts://, the pipeline
with its own account (shared subscription, local CA verified), InfluxDB; and hostile traffic from a device
that the broker and the validator must absorb while good data next to it lands."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from simulators.district import DistrictSimulator, MqttTarget, Pacing, new_client, publish

from citytelemetry.config import InfluxSettings, Settings
from citytelemetry.security.local import LocalCredentials
from tests.conftest import influx_query

from .conftest import MqttProbeClient, SecureBroker
from .pipeline_harness import pipeline_settings, running_pipeline, wait_for

pytestmark = pytest.mark.integration


def device_credential_clients(creds: LocalCredentials, base_id: str, ca_file: str) -> Callable[[str], mqtt.Client]:
    """A simulator client factory: each per-device connection logs in as its device, over TLS with the local CA.

    The simulator names per-device clients ``<base_id>-<device_id>``; its one shared connection (which then
    carries nothing) logs in as the operator account, which may publish nothing.
    """
    def factory(client_id: str) -> mqtt.Client:
        client = new_client(client_id)
        device_id = client_id.removeprefix(base_id).removeprefix("-")
        client.username_pw_set(*(creds.device(device_id) if device_id else creds.operator))
        client.tls_set(ca_certs=ca_file)
        return client
    return factory


def secure_pipeline_settings(broker: SecureBroker, influx_url: str, database: str, **pipeline: object) -> Settings:
    settings = pipeline_settings(broker.settings.mqtt.url, broker.prefix,
                                 InfluxSettings(url=influx_url, database=database), **pipeline)
    # A group per test: a persistent session left in a share group keeps receiving its share while it is away.
    group = f"ct{uuid.uuid4().hex[:8]}"
    broker.add_member(settings.mqtt.client_id)  # its own account: the broker names the session by it
    mqtt_settings = broker.creds.pipeline_mqtt(settings.mqtt).model_copy(update={"shared_group": group})
    return settings.model_copy(update={"mqtt": mqtt_settings})


async def test_devices_with_their_own_credentials_reach_influxdb_over_mqtts(
        secure_broker: SecureBroker, influxdb: str, influx_db_name: str) -> None:
    settings = secure_pipeline_settings(secure_broker, influxdb, influx_db_name)
    assert settings.mqtt.tls
    assert settings.mqtt.ca_file == secure_broker.ca_file
    sim = DistrictSimulator(secure_broker.catalog, seed=7, duration_s=None, max_messages=300, pacing=Pacing(speed=0),
                            max_devices=20, topic_prefix=secure_broker.prefix)
    base_id = f"ct-sec-sim-{uuid.uuid4().hex[:6]}"
    # Not an mqtts target on purpose: the factory has set TLS up with the local CA already.
    target = MqttTarget("127.0.0.1", secure_broker.port)
    async with running_pipeline(settings, secure_broker.catalog) as pipeline:
        summary = await asyncio.to_thread(publish, sim, target, client_id=base_id, per_device_connections=True,
                                          client_factory=device_credential_clients(
                                              secure_broker.creds, base_id, str(secure_broker.ca_file)))
        total = summary.messages_sent + summary.status_messages
        await wait_for(lambda: pipeline.stats.messages_settled >= total, 30, f"{total} messages settled")

    assert summary.messages_sent == 300
    counts = Counter[str]()
    for series in influx_query(influxdb, influx_db_name, "SELECT count(seq) FROM " + ",".join(
            f'"{t}"' for t in sorted(secure_broker.catalog.profiles))):
        counts[series["name"]] = series["values"][0][1]
    assert counts == Counter(summary.points_by_type)
    assert dict(pipeline.stats.rejections) == {}


async def test_hostile_traffic_is_refused_by_reason_and_good_data_beside_it_lands(
        secure_broker: SecureBroker, influxdb: str, influx_db_name: str) -> None:
    # Every refused message gets its ct_rejects point here (a budget above what this test sends): the
    # per-device dead-letter bound has its own test (test_deadletters.py).
    settings = secure_pipeline_settings(secure_broker, influxdb, influx_db_name, deadletter_burst=1000)
    device = next(d for d in secure_broker.catalog.devices.values() if d.profile.type == "tunnel_multigas")
    victim = next(d for d in secure_broker.catalog.devices.values()
                  if d.profile.type == "tunnel_multigas" and d.id != device.id)
    topic = secure_broker.telemetry(device)
    now_ms = time.time_ns() // 1_000_000

    def body(seq: int, **values: object) -> bytes:
        return json.dumps({"device": device.id, "seq": seq, "ts": now_ms - 60_000 + seq,
                           "values": values or {"o2": 20.9}}).encode()

    hostile: list[tuple[bytes, str]] = [
        (b"\xff\xfe\x00", "not_utf8"),
        (b"o2=20.9", "not_json"),
        (b'{"device": "' + device.id.encode() + b'", "v": ' + b"[" * 5000 + b"]" * 5000 + b"}", "not_json"),
        (b"{" + b" " * 70_000 + b"}", "payload_too_large"),
        (body(3).replace(b"20.9", b"1e999"), "not_json"),
        (body(4).replace(b"20.9", b"NaN"), "not_json"),
        (body(5, o2=True), "wrong_type"),
        (body(6, o2="20.9"), "wrong_type"),
        (body(7, **{"o2,site=evil x=1": 1.0}), "unknown_measurement"),
        (body(8, **{"o2\nct_rejects,reason=forged count=1i 1": 1.0}), "unknown_measurement"),
        (body(9).replace(device.id.encode(), victim.id.encode()), "device_mismatch"),
        (body(2), "duplicate_sequence"),  # a replay of an older reading
        (json.dumps({"device": device.id, "seq": 11, "ts": now_ms + 86_400_000 * 365,
                     "values": {"o2": 20.9}}).encode(), "timestamp_in_future"),
    ]
    flood = 300
    async with running_pipeline(settings, secure_broker.catalog) as pipeline:
        client = MqttProbeClient(secure_broker.port, *secure_broker.creds.device(device.id),
                                 ca_file=secure_broker.ca_file)
        try:
            client.connect()
            sent = 0
            for seq in (1, 2):
                assert not client.publish(topic, body(seq)).is_failure
                sent += 1
            for payload, _ in hostile:
                assert not client.publish(topic, payload).is_failure
                sent += 1
            for i in range(flood):  # a burst of junk from one device
                client.client.publish(topic, b"\x00junk %d" % i, qos=1)
            sent += flood
            assert not client.publish(topic, body(20, o2=20.5)).is_failure
            sent += 1
            spoof = client.publish(secure_broker.telemetry(victim), body(21))
        finally:
            client.close()
        await wait_for(lambda: pipeline.stats.messages_settled >= sent, 30,
                       f"{sent} settled: {pipeline.stats.messages_received} received, "
                       f"{pipeline.stats.messages_settled} settled, {dict(pipeline.stats.rejections)}")
        assert pipeline.stats.mqtt_connected

    assert spoof.value == 0x87  # never reached the pipeline
    # Each of the 313 refusals cost the device a token of its rate budget (burst 200): its next good reading
    # is refused as rate_limited, a flood of junk is not free.
    expected = Counter(reason for _, reason in hostile) + Counter({"not_json": flood, "rate_limited": 1})
    assert Counter(pipeline.stats.rejections) == expected
    [series] = influx_query(influxdb, influx_db_name,
                            f"SELECT seq, o2 FROM tunnel_multigas WHERE device = '{device.id}'")
    assert [row[1:] for row in series["values"]] == [[1, 20.9], [2, 20.9]]
    reasons = {s["tags"]["reason"] for s in influx_query(
        influxdb, influx_db_name, 'SELECT count("count") FROM ct_rejects GROUP BY reason')}
    assert reasons == set(expected)
    forged = influx_query(influxdb, influx_db_name, "SELECT * FROM ct_rejects WHERE reason = 'forged'")
    assert forged == []
    # Refused keys are stored readably: controls as their Unicode pictures, never a backslash escape.
    [refused] = influx_query(influxdb, influx_db_name, 'SELECT "field", detail FROM ct_rejects WHERE '
                             "reason = 'unknown_measurement'")
    assert sorted(row[1] for row in refused["values"]) == [
        "o2,site=evil x=1", "o2\u240act_rejects,reason=forged count=1i 1"]
    assert any("'o2\u240act_rejects,reason=forged count=1i 1' is not a measurement of tunnel_multigas" in row[2]
               for row in refused["values"])
    assert not any("\\" in row[1] + row[2] for row in refused["values"])
