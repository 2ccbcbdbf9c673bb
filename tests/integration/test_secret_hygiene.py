"""No secret leaves the process: credentials set in every place the configuration accepts them (TOML file
and environment; MQTT password, InfluxDB password and token) appear in none of `config show`, the log of
a run whose InfluxDB fails every write, /healthz, /metrics; a URL with user info or a query string is
refused at start with a message that points to the keys and does not echo the secret (issue 14, item 5)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from citytelemetry.services import free_port
from tests.conftest import MqttBroker

from .conftest import MqttProbeClient
from .pipeline_harness import ROOT, shipped_catalog
from .process_harness import PipelineProcess

pytestmark = pytest.mark.integration
TAG = uuid.uuid4().hex[:8]
MQTT_PASSWORD = f"mqtt-S3cret-{TAG}"
INFLUX_PASSWORD = f"influx-S3cret-{TAG}"
INFLUX_TOKEN = f"influx-T0ken-{TAG}"


def _forbidden() -> list[str]:
    secrets = [MQTT_PASSWORD, INFLUX_PASSWORD, INFLUX_TOKEN]
    encoded = [base64.b64encode(f"{user}:{secret}".encode()).decode()
               for user, secret in (("ct-mqtt-user", MQTT_PASSWORD), ("ct_writer", INFLUX_PASSWORD))]
    return [*secrets, *encoded, f"Token {INFLUX_TOKEN}"]


def _assert_clean(where: str, text: str) -> None:
    leaked = [secret for secret in _forbidden() if secret in text]
    assert not leaked, f"{where} shows {leaked}"


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "citytelemetry.toml"
    path.write_text(f'[mqtt]\nusername = "ct-mqtt-user"\npassword = "{MQTT_PASSWORD}"\n'
                    f'[influx]\nusername = "ct_writer"\ntoken = "{INFLUX_TOKEN}"\n', encoding="utf-8")
    path.chmod(0o600)
    return path


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "citytelemetry", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()
    except urllib.error.HTTPError as exc:  # /healthz answers 503 while writes fail: the body is what we read
        return exc.read().decode()


def test_secrets_in_every_accepted_place_appear_in_no_output(mosquitto: MqttBroker, tmp_path: Path) -> None:
    dead_influx = f"http://127.0.0.1:{free_port()}"  # nothing listens: every write fails
    http_port = free_port()
    config = _config_file(tmp_path)
    process = PipelineProcess(mqtt_url=mosquitto.url, influx_url=dead_influx, database="ct_hygiene",
                              prefix=f"hygiene/{TAG}", client_id=f"ct-hygiene-{TAG}", spool_dir=tmp_path / "spool",
                              log_file=tmp_path / "run.log", influx__password=INFLUX_PASSWORD,
                              http__port=str(http_port), influx__timeout_s="1")
    shown = _cli("--config", str(config), "config", "show", env=process.env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert settings["mqtt"]["password"] == settings["influx"]["password"] == settings["influx"]["token"] == "**********"
    _assert_clean("config show", shown.stdout + shown.stderr)

    process.start()  # in tmp_path: `run` reads ./citytelemetry.toml
    try:
        device = shipped_catalog().devices["tun-c001-gas1"]
        publisher = MqttProbeClient(mosquitto.port, None, None, ca_file=None)
        try:
            assert not publisher.connect().is_failure
            body = {"device": device.id, "seq": 1, "ts": time.time_ns() // 1_000_000, "values": {"o2": 20.9}}
            assert not publisher.publish(f"hygiene/{TAG}/{device.site}/{device.system.value}/{device.id}/telemetry",
                                         json.dumps(body).encode()).is_failure
        finally:
            publisher.close()
        process.wait_for_log("citytelemetry.sink.buffer: write of", 30)  # a failing write of the reading
        health = _get(f"http://127.0.0.1:{http_port}/healthz")
        metrics = _get(f"http://127.0.0.1:{http_port}/metrics")
    finally:
        process.terminate()
    body = json.loads(health)  # reason codes only (observability/health.py), whatever the failure's text
    assert "influxdb_failing" in body["not_ready"] + body["degraded"], (health, process.log())
    assert "citytelemetry_" in metrics
    log = process.log_file.read_text(errors="replace")
    assert log.count("write of") >= 1
    for where, text in (("the run's log", log), ("/healthz", health), ("/metrics", metrics)):
        _assert_clean(where, text)


@pytest.mark.parametrize(("key", "url", "points_to"), [
    ("INFLUX__URL", "http://admin:{secret}@127.0.0.1:8086", "influx.username and influx.password"),
    ("INFLUX__URL", "http://127.0.0.1:8086/?u=admin&p={secret}", "influx.username and influx.password"),
    ("MQTT__URL", "mqtt://dev:{secret}@127.0.0.1:1883", "mqtt.username and mqtt.password"),
    ("ALERTMANAGER__URL", "https://am:{secret}@127.0.0.1:9093", "no credentials"),
    ("INFLUX__URL", "ftp://admin:{secret}@127.0.0.1/x?p={secret}", "expected a URL like http://host:port"),
])
def test_a_url_that_holds_a_secret_is_refused_at_start_without_echoing_it(
        tmp_path: Path, key: str, url: str, points_to: str) -> None:
    secret = f"S3cret{TAG}"
    env = {k: v for k, v in os.environ.items() if not (k.startswith("CITYTELEMETRY_") and "__" in k)}
    env.update({"PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT / "src")),
                f"CITYTELEMETRY_{key}": url.format(secret=secret)})
    for command in (("config", "show"), ("run",)):
        result = _cli(*command, env=env, cwd=tmp_path)
        assert result.returncode != 0
        assert f"{key.lower().replace('__', '.')}: " in result.stderr + result.stdout
        assert points_to in result.stderr + result.stdout
        assert secret not in result.stderr + result.stdout
