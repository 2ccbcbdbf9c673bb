"""Reload without a restart, against the real process: SIGHUP and ``citytelemetry reload`` on a running
``citytelemetry run`` with a real mosquitto and InfluxDB 1.x."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from citytelemetry.services import free_port
from tests.conftest import MqttBroker, influx_query

from .pipeline_harness import ROOT
from .process_harness import PipelineProcess

pytestmark = pytest.mark.integration

NEW = "tun-c999-gas1"


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not on /metrics")


def _wait(condition: Any, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def _publish(url: str, prefix: str, seq: int) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"ct-reload-{seq}",
                         protocol=mqtt.MQTTv5)
    host, port = url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.loop_start()
    payload = {"device": NEW, "seq": seq, "ts": time.time_ns() // 1_000_000, "values": {"ch4": 1.5, "o2": 20.9}}
    info = client.publish(f"{prefix}/hunnan/tunnel/{NEW}/telemetry", json.dumps(payload), qos=1)
    info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def _landed(influx: str, database: str) -> int:
    series = influx_query(influx, database, f"SELECT count(ch4) FROM tunnel_multigas WHERE device = '{NEW}'")
    return int(series[0]["values"][0][1]) if series else 0


def _edit(path: Path, change: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def test_a_device_added_on_sighup_lands_and_a_broken_profile_changes_nothing(
        tmp_path: Path, mosquitto: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str) -> None:
    district = tmp_path / "district"
    shutil.copytree(ROOT / "device_profiles", district, ignore=shutil.ignore_patterns("*.md"))
    http_port = free_port()
    process = PipelineProcess(
        mqtt_url=mosquitto.url, influx_url=influxdb, database=influx_db_name, prefix=mqtt_topic_prefix,
        client_id=f"ct-reload-{influx_db_name[-6:]}", spool_dir=tmp_path / "spool", log_file=tmp_path / "run.log",
        pipeline__profiles_dir=str(district / "types"), pipeline__inventory_dir=str(district / "inventory"),
        http__port=str(http_port))
    process.start()
    try:
        _publish(mosquitto.url, mqtt_topic_prefix, 1)  # not in the inventory yet: refused
        _wait(lambda: 'citytelemetry_rejections_total{reason="unknown_device"} 1.0' in _scrape(http_port),
              "the unknown device refused")

        _edit(district / "inventory" / "tunnel.yaml", lambda d: d["devices"].append(
            {"id": NEW, "type": "tunnel_multigas", "location": {"cabin": "gas", "compartment": "c999", "km": "31.9"}}))
        assert process.process is not None
        process.process.send_signal(signal.SIGHUP)
        process.wait_for_log(f"reloaded: devices added 1 ({NEW})\nalert rules: not read (alerting is off)\n", 60)
        _publish(mosquitto.url, mqtt_topic_prefix, 2)
        _wait(lambda: _landed(influxdb, influx_db_name) == 1, "the added device's reading in InfluxDB")

        # A broken profile: nothing changes, the problem is named and counted, the device still lands.
        gas = district / "types" / "tunnel_multigas.yaml"
        _edit(gas, lambda d: d["measurements"]["ch4"]["range"].update(min="low"))
        result = subprocess.run(
            [sys.executable, "-m", "citytelemetry", "reload"], capture_output=True, text=True, timeout=120,
            env={**os.environ, "CITYTELEMETRY_HTTP__PORT": str(http_port)}, check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stdout.splitlines()[:2] == [
            "reload refused, nothing changed:", f"  {gas}: measurements.ch4.range.min: Input should be a valid number"]
        metrics = _scrape(http_port)
        assert 'citytelemetry_reloads_total{result="refused"} 1.0' in metrics
        assert 'citytelemetry_reloads_total{result="applied"} 1.0' in metrics
        assert f"{gas}: measurements.ch4.range.min" in process.log()
        _publish(mosquitto.url, mqtt_topic_prefix, 3)
        _wait(lambda: _landed(influxdb, influx_db_name) == 2, "a reading after the refused reload")
        assert _metric(_scrape(http_port), "citytelemetry_catalog_devices") == 1638
        assert process.terminate() == 0
    finally:
        process.stop_quietly()
