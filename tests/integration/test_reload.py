"""Reload without a restart, against the real process: SIGHUP and ``citytelemetry reload`` on a running
``citytelemetry run`` with a real mosquitto and InfluxDB 1.x."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from citytelemetry.config import MqttSettings
from citytelemetry.contracts import InboundMessage
from citytelemetry.ingest.factory import open_source
from citytelemetry.ingest.partition import Partition
from citytelemetry.profiles import Catalog
from citytelemetry.services import ManagedService, definitions, free_port
from citytelemetry.services.definitions import DEPLOY_DIR
from tests.conftest import MqttBroker, influx_query

from .pipeline_harness import ROOT, shipped_catalog
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


def _publish(url: str, prefix: str, seq: int, device: str = NEW) -> None:
    """One tunnel_multigas reading of ``device`` (site hunnan), QoS 1, acknowledged by the broker."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"ct-reload-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    host, port = url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.loop_start()
    payload = {"device": device, "seq": seq, "ts": time.time_ns() // 1_000_000, "values": {"ch4": 1.5, "o2": 20.9}}
    info = client.publish(f"{prefix}/hunnan/tunnel/{device}/telemetry", json.dumps(payload), qos=1)
    info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def _landed(influx: str, database: str, device: str = NEW) -> int:
    series = influx_query(influx, database, f"SELECT count(ch4) FROM tunnel_multigas WHERE device = '{device}'")
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


class WildcardAudit:
    """A bare subscriber on every telemetry topic of ``prefix``: what was published, whoever else gets it."""

    def __init__(self, url: str, prefix: str) -> None:
        self.topics: list[str] = []
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=f"ct-reload-audit-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        self._client.on_message = lambda _c, _u, message: self.topics.append(message.topic)
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        host, port = url.removeprefix("mqtt://").split(":")
        self._client.connect(host, int(port))
        self._client.loop_start()
        self._client.subscribe(f"{prefix}/+/+/+/telemetry", qos=1)
        assert subscribed.wait(10), "no SUBACK for the audit subscriber"

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _post_reload(port: int) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        body: dict[str, Any] = json.load(response)
    return body


def _owned_multigas(member: Partition, catalog: Catalog) -> str:
    """A tunnel_multigas device of the shipped inventory (site hunnan) that ``member`` owns."""
    return next(d.id for d in catalog.devices.values()
                if d.profile.type == "tunnel_multigas" and d.site == "hunnan" and member.owns(d.id))


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_partitioned_member_subscribes_to_added_devices_and_drops_removed_ones_at_reload(
        tmp_path: Path, mosquitto: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str,
        protocol: str) -> None:
    member = Partition.of("1/2", shipped_catalog().devices.values())
    # Not in the inventory; owned by its compartment (pipeline.partition_by): one this member owns.
    compartment = next(f"c{n}" for n in range(900, 1000)
                       if Partition(1, 2, {"new": f"hunnan/cabin=gas,compartment=c{n}"}).owns("new"))
    added = f"tun-{compartment}-gas1"
    removed = _owned_multigas(member, shipped_catalog())
    district = tmp_path / "district"
    shutil.copytree(ROOT / "device_profiles", district, ignore=shutil.ignore_patterns("*.md"))
    tunnel = district / "inventory" / "tunnel.yaml"
    http_port = free_port()
    process = PipelineProcess(
        mqtt_url=mosquitto.url, influx_url=influxdb, database=influx_db_name, prefix=mqtt_topic_prefix,
        client_id=f"ct-reload-part-{influx_db_name[-6:]}", spool_dir=tmp_path / "spool", log_file=tmp_path / "run.log",
        pipeline__profiles_dir=str(district / "types"), pipeline__inventory_dir=str(district / "inventory"),
        pipeline__partition=str(member), pipeline__checkpoint_file=str(tmp_path / "device-state.ckpt"),
        pipeline__deadletter_dir=str(tmp_path / "deadletters"), mqtt__protocol=protocol, http__port=str(http_port))
    audit = WildcardAudit(mosquitto.url, mqtt_topic_prefix)
    process.start()
    try:
        _publish(mosquitto.url, mqtt_topic_prefix, 1, removed)
        _wait(lambda: _landed(influxdb, influx_db_name, removed) == 1, "the device to be removed lands meanwhile")

        # Added: the member subscribes to its topics on the open connection; its readings land.
        location = {"cabin": "gas", "compartment": compartment, "km": "31.9"}
        _edit(tunnel, lambda d: d["devices"].append({"id": added, "type": "tunnel_multigas", "location": location}))
        report = _post_reload(http_port)
        topics = [f"{mqtt_topic_prefix}/hunnan/tunnel/{added}/{kind}" for kind in ("telemetry", "status")]
        assert (report["applied"], report["devices"]["added"]) == (True, [added])
        assert report["subscriptions"] == {"subscribed": topics, "unsubscribed": [], "refused": [], "connected": True,
                                           "error": None}
        assert "subscriptions: subscribed 2 topics" in report["lines"]
        for seq in (1, 2, 3):
            _publish(mosquitto.url, mqtt_topic_prefix, seq, added)
        _wait(lambda: _landed(influxdb, influx_db_name, added) == 3, "the added device's three readings")

        # Removed: its topics are unsubscribed; the broker no longer hands its messages to the member.
        _edit(tunnel, lambda d: d.update(devices=[x for x in d["devices"] if x["id"] != removed]))
        assert process.process is not None
        process.process.send_signal(signal.SIGHUP)
        process.wait_for_log("subscriptions: unsubscribed 2 topics", 60)
        assert_not_delivered(process, http_port, mosquitto.url, mqtt_topic_prefix, audit, removed, added, seq=4)
        assert _landed(influxdb, influx_db_name, added) == 4
        assert _metric(_scrape(http_port), "citytelemetry_subscriptions_refused_total") == 0

        # A restart keeps the new set: the added device lands, the removed one still reaches nobody.
        assert process.terminate() == 0
        process.start()
        _publish(mosquitto.url, mqtt_topic_prefix, 5, added)
        _wait(lambda: _landed(influxdb, influx_db_name, added) == 5, "the added device after the restart")
        assert_not_delivered(process, http_port, mosquitto.url, mqtt_topic_prefix, audit, removed, added, seq=6)
        assert (_landed(influxdb, influx_db_name, added), _landed(influxdb, influx_db_name, removed)) == (6, 1)
        assert process.terminate() == 0
    finally:
        audit.close()
        process.stop_quietly()


def assert_not_delivered(process: PipelineProcess, http_port: int, url: str, prefix: str, audit: WildcardAudit,
                         removed: str, added: str, *, seq: int) -> None:
    """Publish one reading of ``removed`` and then one of ``added`` (the barrier: once the member has that,
    it would have had the first); the wildcard subscriber sees both, the member only the second."""
    _wait(lambda: _metric(_scrape(http_port), "citytelemetry_mqtt_connected") == 1, "the member connected")
    influx, database = process.env["CITYTELEMETRY_INFLUX__URL"], process.env["CITYTELEMETRY_INFLUX__DATABASE"]
    received = _metric(_scrape(http_port), "citytelemetry_messages_received_total")
    landed, seen = _landed(influx, database, added), len(audit.topics)
    _publish(url, prefix, seq, removed)
    _publish(url, prefix, seq, added)
    _wait(lambda: len(audit.topics) == seen + 2, "the audit subscriber's two messages")
    assert audit.topics[seen:] == [f"{prefix}/hunnan/tunnel/{d}/telemetry" for d in (removed, added)]
    _wait(lambda: _landed(influx, database, added) == landed + 1, "the barrier reading lands")
    metrics = _scrape(http_port)
    assert _metric(metrics, "citytelemetry_messages_received_total") == received + 1  # the barrier only
    assert 'reason="unknown_device"' not in metrics  # the removed device's reading never reached the member


DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
REFUSED = "tun-c998-gas1"  # the ACL broker refuses its topics under acl/allowed/


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[ManagedService]:
    """mosquitto, anonymous, whose dynamic-security plugin lets anonymous clients subscribe to
    ``acl/allowed/#`` only, and there not to the topics of ``REFUSED``. The ``acl_file`` would not do:
    mosquitto 2.0 grants every SUBSCRIBE under it (SUBACK 0) and filters at delivery."""
    assert DYNSEC_PLUGIN.exists(), f"{DYNSEC_PLUGIN} (the mosquitto package's dynamic-security plugin) is needed"
    config = tmp_path / "dynsec.json"
    config.write_text(json.dumps({
        "defaultACLAccess": {"publishClientSend": True, "publishClientReceive": True, "subscribe": False,
                             "unsubscribe": True},
        "clients": [], "groups": [{"groupname": "anonymous", "roles": [{"rolename": "reader"}], "clients": []}],
        "roles": [{"rolename": "reader", "acls": [
            {"acltype": "subscribePattern", "topic": f"acl/allowed/+/+/{REFUSED}/#", "priority": 1, "allow": False},
            {"acltype": "subscribePattern", "topic": "acl/allowed/#", "priority": 0, "allow": True}]}],
        "anonymousGroup": "anonymous"}), encoding="utf-8")
    templates = tmp_path / "templates"
    templates.mkdir()
    template = (DEPLOY_DIR / "mosquitto.conf.template").read_text(encoding="utf-8")
    assert "${access}\n" in template
    plugin = f"${{access}}\nplugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {config}\n"
    (templates / "mosquitto.conf.template").write_text(template.replace("${access}\n", plugin), encoding="utf-8")
    with ManagedService(definitions.mosquitto(tmp_path / "services", free_port(), templates=templates)) as service:
        yield service


def _publish_plain(port: int, *topics: str) -> None:
    """QoS 1, in order, each acknowledged by the broker."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"ct-acl-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic in topics:
        client.publish(topic, b"x", qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


async def _next_topic(messages: AsyncIterator[InboundMessage]) -> str:
    async with asyncio.timeout(10):
        message = await anext(messages)
    message.delivery.settle()
    return message.topic


@pytest.mark.parametrize(("protocol", "refusal"), [("5", "NOT_AUTHORIZED"), ("3.1.1", "UNSPECIFIED_ERROR")])
async def test_the_source_subscribes_and_unsubscribes_on_the_open_connection_and_names_a_refusal(
        acl_broker: ManagedService, protocol: str, refusal: str) -> None:
    """What a reload asks of the connection (ingest/member_topics.py), on both MQTT versions: a topic the
    ACL refuses comes back with the broker's reason and the connection stays up for the rest."""
    port = acl_broker.spec.port
    settings = MqttSettings(url=f"mqtt://127.0.0.1:{port}", topic_prefix="acl", session_expiry_s=0,
                            client_id=f"ct-acl-{uuid.uuid4().hex[:8]}", protocol=protocol)  # type: ignore[arg-type]
    async with open_source(settings, connect_timeout_s=10, topic_filters=["acl/allowed/a"]) as source:
        assert source.version == protocol
        refused = await source.subscribe(["acl/allowed/b", "acl/denied/c"], timeout_s=10)
        assert refused == [("acl/denied/c", refusal)]
        messages = aiter(source.messages())
        await asyncio.to_thread(_publish_plain, port, "acl/denied/c", "acl/allowed/b", "acl/allowed/a")
        assert [await _next_topic(messages) for _ in range(2)] == ["acl/allowed/b", "acl/allowed/a"]
        assert await source.unsubscribe(["acl/allowed/b"], timeout_s=10) == []
        await asyncio.to_thread(_publish_plain, port, "acl/allowed/b", "acl/allowed/a")
        assert await _next_topic(messages) == "acl/allowed/a"  # the barrier: b, published before it, is gone


def test_a_subscription_the_broker_refuses_at_reload_is_reported_in_words_and_counted(
        tmp_path: Path, acl_broker: ManagedService, influxdb: str, influx_db_name: str) -> None:
    district = tmp_path / "district"
    shutil.copytree(ROOT / "device_profiles", district, ignore=shutil.ignore_patterns("*.md"))
    http_port, prefix = free_port(), "acl/allowed"
    process = PipelineProcess(
        mqtt_url=acl_broker.url, influx_url=influxdb, database=influx_db_name, prefix=prefix,
        client_id=f"ct-reload-acl-{influx_db_name[-6:]}", spool_dir=tmp_path / "spool", log_file=tmp_path / "run.log",
        pipeline__profiles_dir=str(district / "types"), pipeline__inventory_dir=str(district / "inventory"),
        pipeline__partition="1/1", pipeline__checkpoint_file=str(tmp_path / "device-state.ckpt"),
        pipeline__deadletter_dir=str(tmp_path / "deadletters"), http__port=str(http_port))
    process.start()
    try:
        location = {"cabin": "gas", "compartment": "c998", "km": "31.8"}
        _edit(district / "inventory" / "tunnel.yaml", lambda d: d["devices"].append(
            {"id": REFUSED, "type": "tunnel_multigas", "location": location}))
        report = _post_reload(http_port)
        topics = [f"{prefix}/hunnan/tunnel/{REFUSED}/{kind}" for kind in ("telemetry", "status")]
        assert report["applied"]
        assert report["subscriptions"]["refused"] == [{"topic": t, "reason": "NOT_AUTHORIZED"} for t in topics]
        warnings = [f"warning: the broker refused the subscription to {t} (NOT_AUTHORIZED): its messages reach no "
                    "member; allow it (ACL) and reload" for t in topics]
        assert report["lines"][-3:] == ["subscriptions: refused 2 topics", *warnings]
        assert warnings[0] in process.log()
        metrics = _scrape(http_port)
        assert _metric(metrics, "citytelemetry_subscriptions_refused_total") == 2
        assert _metric(metrics, "citytelemetry_mqtt_connected") == 1  # the connection stays, for every other device
        assert process.terminate() == 0

        # A restart with the refused device still in the inventory: the member connects for every other
        # device (one device missing from an ACL must not keep them all unread), and says so again.
        before = len(process.log_file.read_text(errors="replace"))
        process.start()
        refusal = f"the broker refused the subscription to {topics[0]} (NOT_AUTHORIZED): its messages reach no member"
        _wait(lambda: refusal in process.log_file.read_text(errors="replace")[before:], "the refusal logged at the "
              "restart", 60)
        _wait(lambda: _metric(_scrape(http_port), "citytelemetry_mqtt_connected") == 1, "connected after the restart")
        assert _metric(_scrape(http_port), "citytelemetry_subscriptions_refused_total") == 2
        assert process.terminate() == 0
    finally:
        process.stop_quietly()
