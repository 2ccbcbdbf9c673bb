"""Fixtures for the security tests: a broker with per-device credentials, ACLs and TLS from the inventory.

The session's open ``mosquitto`` fixture (tests/conftest.py) is untouched; this broker is another
instance with its own run directory. ``MqttProbeClient`` is a small blocking paho wrapper that reports
what the broker answered (CONNACK, PUBACK and SUBACK reason codes) and what it delivered.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from citytelemetry.config import MqttSettings, ServicesSettings, Settings
from citytelemetry.profiles import Catalog, RegisteredDevice
from citytelemetry.security.local import LocalCredentials, local_credentials, prepare_broker
from citytelemetry.services import ManagedService, ServiceError, definitions, free_port

from .brokers import nats_mqtt  # noqa: F401 - the MQTT 3.1.1-only broker, one per session for every module
from .pipeline_harness import shipped_catalog


@dataclass(frozen=True, slots=True)
class SecureBroker:
    settings: Settings  # mqtt.url is mqtts://127.0.0.1:<port>; services.run_dir holds security/
    creds: LocalCredentials
    catalog: Catalog
    ca_file: Path
    service: ManagedService

    @property
    def log_file(self) -> Path:
        return self.settings.services.run_dir.resolve() / "mosquitto" / "mosquitto.log"

    def add_member(self, client_id: str) -> tuple[str, str]:
        """Give a pipeline member (a test's own ``client_id``) its account, as `security acl --reload` does:
        rewrite the files, SIGHUP the broker, wait until the credential is accepted. One member per test
        keeps each test's persistent session its own (the broker names a session by the account)."""
        self.settings.mqtt.members.append(client_id)  # the fixture's settings: the broker's list of members
        prepare_broker(self.settings, self.catalog, tls=True)
        pid = self.service.pid
        assert pid is not None, "the secure broker is not running"
        os.kill(pid, signal.SIGHUP)
        credential = self.creds.member(client_id)
        deadline = time.monotonic() + 10
        while True:
            probe = MqttProbeClient(self.port, *credential, ca_file=self.ca_file)
            try:
                if not probe.connect().is_failure:
                    return credential
            finally:
                probe.close()
            assert time.monotonic() < deadline, f"the broker did not reload the account {client_id}"
            time.sleep(0.1)

    @property
    def port(self) -> int:
        return self.settings.mqtt.port

    @property
    def prefix(self) -> str:
        return self.settings.mqtt.topic_prefix

    def device(self, index: int) -> RegisteredDevice:
        return self.catalog.devices[sorted(self.catalog.devices)[index]]

    def telemetry(self, device: RegisteredDevice) -> str:
        return f"{self.prefix}/{device.site}/{device.system.value}/{device.id}/telemetry"


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """mosquitto with anonymous access off, the inventory's password and ACL files, and TLS (local CA)."""
    run_dir = tmp_path_factory.mktemp("secure")
    port = free_port()
    settings = Settings(services=ServicesSettings(run_dir=run_dir), mqtt=MqttSettings(url=f"mqtts://127.0.0.1:{port}"))
    catalog = shipped_catalog()
    files = prepare_broker(settings, catalog, tls=True)
    assert files.pki is not None
    pki = files.pki
    spec = definitions.mosquitto(run_dir, port, auth=definitions.MosquittoAuth(files.password_file, files.acl_file),
                                 tls=definitions.TlsFiles(pki.ca.cert, pki.server.cert, pki.server.key))
    service = ManagedService(spec)
    try:
        service.start()
    except ServiceError as exc:
        pytest.fail(f"cannot start the secure broker: {exc}", pytrace=False)
    try:
        yield SecureBroker(settings, local_credentials(settings, create=False), catalog, pki.ca.cert, service)
    finally:
        service.stop()


NOT_AUTHORIZED = 0x87  # PUBACK / SUBACK reason code: the ACL refused it


class MqttProbeClient:
    """A blocking paho client for assertions: connect, publish (returns the PUBACK code), subscribe."""

    def __init__(self, port: int, username: str | None, password: str | None, *, ca_file: Path | None,
                 v5: bool = True, client_id: str | None = None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.connack: ReasonCode | None = None
        self.disconnects = 0  # paho reconnects by itself; this counts how often the broker dropped us
        self._events: dict[Any, threading.Event] = {}
        self._results: dict[Any, Any] = {}
        self._connected = threading.Event()
        self._port = port
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"probe-{uuid.uuid4().hex[:10]}",
                                  protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        self.client.reconnect_delay_set(0.05, 0.2)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self._done(("pub", mid), rc)
        self.client.on_subscribe = lambda _c, _u, mid, rcs, _p: self._done(("sub", mid), rcs)
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload))
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.connack = rc
        self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, _rc: ReasonCode, _p: Any) -> None:
        self.disconnects += 1

    def _done(self, key: Any, value: Any) -> None:
        self._results[key] = value
        self._events.setdefault(key, threading.Event()).set()

    def _wait(self, key: Any) -> Any:
        assert self._events.setdefault(key, threading.Event()).wait(5), f"no answer to {key}"
        return self._results[key]

    def connect(self, *, clean_start: bool = True, session_expiry_s: int = 0) -> ReasonCode:
        properties = None
        if session_expiry_s and self.client.protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = session_expiry_s
        if self.client.protocol == mqtt.MQTTv5:
            self.client.connect("127.0.0.1", self._port, keepalive=10, clean_start=clean_start, properties=properties)
        else:  # 3.1.1: a clean session (paho's default, fixed at construction)
            self.client.connect("127.0.0.1", self._port, keepalive=10)
        self.client.loop_start()
        assert self._connected.wait(5), "no CONNACK"
        assert self.connack is not None
        return self.connack

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        result: ReasonCode = self._wait(("pub", info.mid))
        return result

    def subscribe(self, topic_filter: str) -> list[ReasonCode]:
        _, mid = self.client.subscribe(topic_filter, qos=1)
        result: list[ReasonCode] = self._wait(("sub", mid))
        return result

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[MqttProbeClient]]:
    """Probe clients a test opens, closed after it."""
    opened: list[MqttProbeClient] = []
    yield opened
    for client in opened:
        client.close()
