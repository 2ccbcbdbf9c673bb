"""Refuse, fix the profile, restart, replay, count: the dead-letter store end to end against real services.

The replay runs as ``python -m citytelemetry deadletters replay`` (a real process, as an operator runs it)
against the same InfluxDB database and store directory the pipeline used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from citytelemetry.config import InfluxSettings, Settings
from citytelemetry.deadletters.entries import read_entries
from citytelemetry.profiles import Catalog, RegisteredDevice, load_catalog
from tests.conftest import MqttBroker, influx_query

from .pipeline_harness import ROOT, pipeline_settings, running_pipeline, wait_for

pytestmark = pytest.mark.integration


def _publish(broker: MqttBroker, topic: str, bodies: list[dict[str, object]]) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"ct-replay-{time.time_ns()}",
                         protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for body in bodies:
            client.publish(topic, orjson.dumps(body), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def _add_co2(types_dir: Path) -> None:
    path = types_dir / "tunnel_multigas.yaml"
    profile = yaml.safe_load(path.read_text(encoding="utf-8"))
    profile["measurements"]["co2"] = {"description": "Carbon dioxide", "value_type": "float", "unit": "ppm",
                                      "range": {"min": 0, "max": 10_000}, "source": "test [est]"}
    path.write_text(yaml.safe_dump(profile, allow_unicode=True), encoding="utf-8")


def _replay(settings: Settings, device: RegisteredDevice) -> tuple[int, list[str]]:
    p = settings.pipeline
    env = {**os.environ, "CITYTELEMETRY_MQTT__TOPIC_PREFIX": settings.mqtt.topic_prefix,
           "CITYTELEMETRY_INFLUX__URL": settings.influx.url, "CITYTELEMETRY_INFLUX__DATABASE": settings.influx.database,
           "CITYTELEMETRY_PIPELINE__PROFILES_DIR": str(p.profiles_dir),
           "CITYTELEMETRY_PIPELINE__INVENTORY_DIR": str(p.inventory_dir),
           "CITYTELEMETRY_PIPELINE__DEADLETTER_DIR": str(p.deadletter_dir)}
    done = subprocess.run([sys.executable, "-m", "citytelemetry", "deadletters", "replay", "--device", device.id],
                          env=env, capture_output=True, timeout=120, check=False, cwd=p.deadletter_dir)
    assert done.returncode in {0, 1}, done.stderr.decode()
    return done.returncode, done.stdout.decode().splitlines()


def _points(influx_url: str, db: str, device: RegisteredDevice) -> list[list[object]]:
    series = influx_query(influx_url, db, f"SELECT seq, o2, co2 FROM tunnel_multigas WHERE device = '{device.id}'")
    return [row[1:] for row in series[0]["values"]] if series else []


async def test_refuse_fix_the_profile_restart_replay_and_count(
        mosquitto: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str, tmp_path: Path) -> None:
    types_dir = tmp_path / "types"
    shutil.copytree(ROOT / "device_profiles" / "types", types_dir)
    influx = InfluxSettings(url=influxdb, database=influx_db_name)
    settings = pipeline_settings(mosquitto.url, mqtt_topic_prefix, influx)
    fixable = settings.pipeline.model_copy(update={"profiles_dir": types_dir})
    settings = settings.model_copy(update={"pipeline": fixable})
    catalog: Catalog = load_catalog(types_dir, settings.pipeline.inventory_dir)
    device = next(d for d in catalog.devices.values() if d.profile.type == "tunnel_multigas")
    topic = f"{mqtt_topic_prefix}/{device.site}/{device.system.value}/{device.id}/telemetry"
    now = time.time_ns() // 1_000_000 - 60_000

    def reading(seq: int, **values: float) -> dict[str, object]:
        return {"device": device.id, "seq": seq, "ts": now + seq * 1000, "values": values}

    # 1. co2 is not in the profile yet: refused (seq 1 partly, seq 2 wholly); seq 3 is out of range for good.
    async with running_pipeline(settings, catalog) as pipeline:
        _publish(mosquitto, topic, [reading(1, o2=20.9, co2=410.0), reading(2, co2=420.0), reading(3, o2=99.0)])
        await wait_for(lambda: pipeline.stats.messages_settled >= 3, 30, "3 messages settled")
    assert dict(pipeline.stats.rejections) == {"unknown_measurement": 2, "out_of_range": 1}
    assert _points(influxdb, influx_db_name, device) == [[1, 20.9, None]]
    assert len(list(read_entries(settings.pipeline.deadletter_dir))) == 3  # type: ignore[arg-type]

    # 2. Fix the profile and restart: new readings with co2 land.
    _add_co2(types_dir)
    catalog = load_catalog(types_dir, settings.pipeline.inventory_dir)
    async with running_pipeline(settings, catalog) as pipeline:
        _publish(mosquitto, topic, [reading(4, co2=430.0)])
        await wait_for(lambda: pipeline.stats.messages_settled >= 1, 30, "1 message settled")
    assert dict(pipeline.stats.rejections) == {}

    # 3. Replay what was refused: co2 of seq 1 and 2 lands, seq 3 is still refused and said so.
    code, out = _replay(settings, device)
    assert code == 1  # something is still refused
    assert out[0] == "# replayed 3 messages: 2 pass now, 1 still refused; wrote 2 points"
    assert out[1].startswith("# still refused 1.3 out_of_range=1: o2: 99.0 %vol outside [0")
    expected = [[1, 20.9, 410.0], [2, None, 420.0], [4, None, 430.0]]
    assert _points(influxdb, influx_db_name, device) == expected

    # 4. Again: idempotent, one point per reading.
    assert _replay(settings, device) == (code, out)
    assert _points(influxdb, influx_db_name, device) == expected
