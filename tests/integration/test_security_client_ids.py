"""Client ids are bound to accounts at the broker (``use_username_as_clientid``): a device that sends the
pipeline's, another member's or another device's client id connects as itself; the victim keeps its
connection and its persistent session, and nothing published meanwhile is lost (issue 14, item 1)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from citytelemetry.config import InfluxSettings
from tests.conftest import influx_query

from .conftest import MqttProbeClient, SecureBroker
from .pipeline_harness import pipeline_settings, running_pipeline, wait_for

pytestmark = pytest.mark.integration



def _log_lines_since(broker: SecureBroker, offset: int) -> list[str]:
    with broker.log_file.open(encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        return log.read().splitlines()


def _wait_for_log(broker: SecureBroker, offset: int, needle: str) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        lines = _log_lines_since(broker, offset)
        if any(needle in line for line in lines):
            return lines
        assert time.monotonic() < deadline, f"broker log has no {needle!r}: {lines[-5:]}"
        time.sleep(0.05)


def test_services_up_and_the_operator_files_bind_client_ids_to_accounts(secure_broker: SecureBroker) -> None:
    run_dir = secure_broker.settings.services.run_dir.resolve()
    conf = (run_dir / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    listener = (run_dir / "security" / "mosquitto" / "listener.conf").read_text().splitlines()
    assert "use_username_as_clientid true" in conf
    assert conf.index("use_username_as_clientid true") > next(i for i, line in enumerate(conf)
                                                              if line.startswith("listener "))
    assert listener == ["allow_anonymous false", f"password_file {run_dir}/security/mosquitto/passwd",
                        f"acl_file {run_dir}/security/mosquitto/acl", "use_username_as_clientid true"]
    assert set(listener) <= set(conf)


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
@pytest.mark.parametrize("victim", ["the pipeline", "another member", "another device"])
def test_a_device_cannot_take_over_another_accounts_client_id(
        secure_broker: SecureBroker, clients: list[MqttProbeClient], victim: str, v5: bool) -> None:
    intruder, witness, other = (secure_broker.device(i) for i in (10, 11, 12))
    creds = secure_broker.creds
    if victim == "the pipeline":
        account = (creds.pipeline_user, creds.pipeline_password)
    elif victim == "another member":
        account = secure_broker.add_member(f"ct-member-{uuid.uuid4().hex[:6]}")
    else:
        account = creds.device(other.id)
    victim_id = account[0]
    target = MqttProbeClient(secure_broker.port, *account, ca_file=secure_broker.ca_file, client_id=victim_id)
    clients.append(target)
    assert not target.connect(clean_start=False, session_expiry_s=300).is_failure
    watcher = target
    if victim == "another device":  # a device reads nothing: the pipeline watches for it
        watcher = MqttProbeClient(secure_broker.port, creds.pipeline_user, creds.pipeline_password,
                                  ca_file=secure_broker.ca_file)
        clients.append(watcher)
        assert not watcher.connect().is_failure
    assert [rc.value for rc in watcher.subscribe(f"{secure_broker.prefix}/+/+/+/telemetry")] == [1]
    offset = secure_broker.log_file.stat().st_size

    attacker = MqttProbeClient(secure_broker.port, *creds.device(intruder.id), ca_file=secure_broker.ca_file,
                               client_id=victim_id, v5=v5)
    clients.append(attacker)
    assert not attacker.connect(clean_start=True).is_failure  # admitted, but under its own name

    lines = _wait_for_log(secure_broker, offset, f"u'{intruder.id}'")
    [connected] = [line for line in lines if f"u'{intruder.id}'" in line]
    assert f" as {intruder.id} (" in connected
    assert not any(f"{victim_id} already connected" in line or f"Client {victim_id} " in line for line in lines)
    witness_client = MqttProbeClient(secure_broker.port, *creds.device(witness.id), ca_file=secure_broker.ca_file)
    clients.append(witness_client)
    assert not witness_client.connect().is_failure
    if victim == "another device":  # the victim device still speaks on its own connection
        assert not target.publish(secure_broker.telemetry(other), b"still here").is_failure
    assert not witness_client.publish(secure_broker.telemetry(witness), b"after the attempt").is_failure
    deadline = time.monotonic() + 5
    while (secure_broker.telemetry(witness), b"after the attempt") not in watcher.messages:
        assert time.monotonic() < deadline, "the victim's subscription stopped delivering"
        time.sleep(0.02)
    assert target.disconnects == 0
    assert attacker.disconnects == 0
    if victim == "another device":
        assert (secure_broker.telemetry(other), b"still here") in watcher.messages


async def test_the_pipeline_keeps_its_session_through_takeover_attempts_and_loses_nothing(
        secure_broker: SecureBroker, influxdb: str, influx_db_name: str) -> None:
    settings = pipeline_settings(secure_broker.settings.mqtt.url, secure_broker.prefix,
                                 InfluxSettings(url=influxdb, database=influx_db_name))
    secure_broker.add_member(settings.mqtt.client_id)
    settings = settings.model_copy(update={"mqtt": secure_broker.creds.pipeline_mqtt(settings.mqtt).model_copy(
        update={"shared_group": f"ct{uuid.uuid4().hex[:8]}"})})
    tunnel = [d for d in secure_broker.catalog.devices.values() if d.profile.type == "tunnel_multigas"]
    witness, intruder = tunnel[0], tunnel[1]
    readings, attempts = 60, 15
    now_ms = time.time_ns() // 1_000_000

    def publish_readings() -> None:
        client = MqttProbeClient(secure_broker.port, *secure_broker.creds.device(witness.id),
                                 ca_file=secure_broker.ca_file)
        try:
            assert not client.connect().is_failure
            for seq in range(1, readings + 1):
                body = {"device": witness.id, "seq": seq, "ts": now_ms - 60_000 + 10 * seq, "values": {"o2": 20.9}}
                assert not client.publish(secure_broker.telemetry(witness), json.dumps(body).encode()).is_failure
                time.sleep(0.02)  # spread over the attempts: about 1.5 s
        finally:
            client.close()

    def attack() -> int:
        admitted = 0
        for _ in range(attempts):  # what the audit did: the pipeline's client id, clean start
            client = MqttProbeClient(secure_broker.port, *secure_broker.creds.device(intruder.id),
                                     ca_file=secure_broker.ca_file, client_id=settings.mqtt.client_id)
            try:
                admitted += not client.connect(clean_start=True).is_failure
            finally:
                client.close()
            time.sleep(0.05)
        return admitted

    async with running_pipeline(settings, secure_broker.catalog) as pipeline:
        _, admitted = await asyncio.gather(asyncio.to_thread(publish_readings), asyncio.to_thread(attack))
        await wait_for(lambda: pipeline.stats.messages_settled >= readings, 30,
                       f"{readings} settled (now {pipeline.stats.messages_settled})")
        assert pipeline.stats.mqtt_connected
        assert pipeline.stats.mqtt_connects == 1  # never knocked off, never reconnected

    assert admitted == attempts  # each attempt got a connection, as the intruder itself
    [series] = influx_query(influxdb, influx_db_name,
                            f"SELECT seq FROM tunnel_multigas WHERE device = '{witness.id}'")
    assert [row[1] for row in series["values"]] == list(range(1, readings + 1))
    assert dict(pipeline.stats.rejections) == {}
