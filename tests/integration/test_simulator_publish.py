"""The simulator against a real mosquitto: every message arrives, on the right topic, in order, and the
retained status reflects the run. Uses the session ``mosquitto`` fixture and a unique topic prefix."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from simulators import DistrictSimulator, Pacing, PublishError, publish
from simulators.cli import main

from citytelemetry.profiles import Catalog, load_catalog
from citytelemetry.services import free_port
from tests.conftest import MqttBroker

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROFILES, INVENTORY = REPO / "device_profiles" / "types", REPO / "device_profiles" / "inventory"
START = 1_780_000_000_000


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(PROFILES, INVENTORY)


class Recorder:
    """A paho subscriber that keeps every message under a prefix, in arrival order."""

    def __init__(self, broker: MqttBroker, prefix: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[tuple[str, bytes, bool]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    break
            time.sleep(0.05)
        time.sleep(0.2)  # anything beyond the expected count would show up now
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def recorder(mosquitto: MqttBroker, mqtt_topic_prefix: str) -> Iterator[Recorder]:
    rec = Recorder(mosquitto, mqtt_topic_prefix)
    yield rec
    rec.close()


def test_every_message_arrives_on_its_topic_in_order(catalog: Catalog, mosquitto: MqttBroker,
                                                      mqtt_topic_prefix: str, recorder: Recorder) -> None:
    sim = DistrictSimulator(catalog, seed=4, start_ms=START, topic_prefix=mqtt_topic_prefix, duration_s=120,
                            pacing=Pacing(speed=0), max_devices=40, faults={"all": 1})
    expected = list(sim.messages())
    summary = publish(sim, mosquitto.url)

    assert summary.messages_sent == len(expected)
    assert summary.status_messages == 2 * len(sim.devices)
    got = recorder.wait_for(summary.messages_sent + summary.status_messages)
    assert len(got) == summary.messages_sent + summary.status_messages
    telemetry = [(t, p) for t, p, _ in got if t.endswith("/telemetry")]
    assert telemetry == [(m.topic, m.payload) for m in expected]  # one connection: publish order is kept
    assert all(t.startswith(f"{mqtt_topic_prefix}/hunnan/") for t, _ in telemetry)
    status = Counter(json.loads(p)["state"] for t, p, _ in got if t.endswith("/status"))
    assert status == {"online": len(sim.devices), "offline": len(sim.devices)}
    assert summary.fault_counts == dict.fromkeys(summary.fault_counts, 1)
    assert len(summary.fault_counts) == 12
    assert summary.expected_points == sum(summary.points_by_type.values())
    assert sum(c.messages for c in summary.per_system.values()) == summary.messages_sent


def test_batches_and_retained_status_with_per_device_connections(
        catalog: Catalog, mosquitto: MqttBroker, mqtt_topic_prefix: str, recorder: Recorder) -> None:
    sim = DistrictSimulator(catalog, seed=2, start_ms=START, topic_prefix=mqtt_topic_prefix, duration_s=300,
                            pacing=Pacing(speed=0), max_devices=6, batch=5)
    summary = publish(sim, mosquitto.url, per_device_connections=True)
    got = recorder.wait_for(summary.messages_sent + summary.status_messages)
    bodies = [json.loads(p) for t, p, _ in got if t.endswith("/telemetry")]
    assert len(bodies) == summary.messages_sent
    assert sum(len(b["readings"]) for b in bodies) == summary.expected_points
    # A late subscriber sees each device's retained status: offline after a clean stop.
    late = Recorder(mosquitto, mqtt_topic_prefix)
    try:
        retained = late.wait_for(len(sim.devices), timeout_s=10)
    finally:
        late.close()
    assert sorted(t for t, _, _ in retained) == sorted(m.topic for m in sim.offline_messages())
    assert all(r and json.loads(p) == {"state": "offline"} for _, p, r in retained)


def test_pacing_follows_simulated_time_or_rate(catalog: Catalog, mosquitto: MqttBroker,
                                               mqtt_topic_prefix: str) -> None:
    accelerated = DistrictSimulator(catalog, seed=1, start_ms=START, topic_prefix=mqtt_topic_prefix,
                                    duration_s=20, pacing=Pacing(speed=10), systems=["station"], max_devices=3)
    started = time.monotonic()
    publish(accelerated, mosquitto.url, status=False)
    span_s = (accelerated.end_ms - accelerated.start_ms) / 1000
    assert time.monotonic() - started >= span_s / 10 * 0.9

    by_rate = DistrictSimulator(catalog, seed=1, start_ms=START, topic_prefix=mqtt_topic_prefix,
                                duration_s=None, max_messages=40, pacing=Pacing(rate=100))
    started = time.monotonic()
    summary = publish(by_rate, mosquitto.url, status=False)
    assert summary.messages_sent == 40
    assert time.monotonic() - started >= 39 / 100 * 0.9


def test_stop_ends_early_but_cleanly(catalog: Catalog, mosquitto: MqttBroker, mqtt_topic_prefix: str,
                                     recorder: Recorder) -> None:
    sim = DistrictSimulator(catalog, seed=1, start_ms=START, topic_prefix=mqtt_topic_prefix, duration_s=3600,
                            pacing=Pacing(speed=1), max_devices=3)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    summary = publish(sim, mosquitto.url, stop=stop)
    assert summary.interrupted
    assert summary.messages_sent < sim.planned_messages
    got = recorder.wait_for(summary.messages_sent + summary.status_messages)
    assert sum(t.endswith("/telemetry") for t, _, _ in got) == summary.messages_sent
    assert sum(json.loads(p) == {"state": "offline"} for t, p, _ in got if t.endswith("/status")) == 3


def test_no_broker_is_a_publish_error(catalog: Catalog) -> None:
    sim = DistrictSimulator(catalog, seed=1, start_ms=START, duration_s=10, max_devices=1)
    with pytest.raises(PublishError, match="connect"):
        publish(sim, f"mqtt://127.0.0.1:{free_port()}", timeout_s=5)


def test_cli_prints_a_summary_that_matches_what_arrived(mosquitto: MqttBroker, mqtt_topic_prefix: str,
                                                        recorder: Recorder,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--mqtt-url", mosquitto.url, "--topic-prefix", mqtt_topic_prefix, "--duration", "60",
                 "--speed", "0", "--seed", "1", "--faults", "not_json=2,out_of_range=3", "--profiles", str(PROFILES),
                 "--inventory", str(INVENTORY), "--systems", "tunnel,station", "--max-devices", "30",
                 "--batch", "3", "--start", str(START)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fault_counts"] == {"not_json": 2, "out_of_range": 3}
    assert set(out["per_system"]) <= {"tunnel", "station"}
    got = recorder.wait_for(out["messages_sent"] + out["status_messages"])
    assert sum(t.endswith("/telemetry") for t, _, _ in got) == out["messages_sent"]
    assert main(["--faults", "nonsense=1", "--dry-run"]) == 2
