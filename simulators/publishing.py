"""Publishing: a generated stream sent to a broker with QoS 1, paced, acknowledged, counted.

    publish(simulator, "mqtt://host:port")  ->  Summary, once the broker has acknowledged everything
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from simulators.generate import OFFLINE, DistrictSimulator, Pacing, SimMessage, Summary


class PublishError(Exception):
    """The broker refused the connection or did not acknowledge every message in time.

    ``summary`` holds what was sent until then.
    """

    def __init__(self, message: str, summary: Summary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass(frozen=True, slots=True)
class MqttTarget:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str, username: str | None = None, password: str | None = None) -> MqttTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"expected mqtt://host:port or mqtts://host:port, got {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), tls,
                   username or (unquote(parts.username) if parts.username else None),
                   password or (unquote(parts.password) if parts.password else None))


ClientFactory = Callable[[str], mqtt.Client]
Credentials = Callable[[str], tuple[str, str]]  # device id -> (username, password)


def new_client(client_id: str) -> mqtt.Client:
    return mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=mqtt.MQTTv5)


class _Connection:
    """One paho client that counts PUBACKs and blocks while ``window`` messages await theirs."""

    def __init__(self, client: mqtt.Client, target: MqttTarget, *, will: tuple[str, bytes] | None,
                 window: int, timeout_s: float) -> None:
        self.client, self.target, self.window, self.timeout_s = client, target, window, timeout_s
        self.sent = self.acked = self.refused = 0
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._error: str | None = None
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        if target.username is not None:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.max_inflight_messages_set(window)  # paho's default of 20 would throttle the window

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        if reason_code.is_failure:
            self._error = str(reason_code)
        else:
            # MQTT 5: paho does not honour the broker's Receive Maximum by itself, and refuses to change
            # its in-flight limit once connected: narrow our own send window instead.
            receive_max = getattr(properties, "ReceiveMaximum", None)
            if isinstance(receive_max, int) and receive_max > 0:
                with self._cond:
                    self.window = min(self.window, receive_max)
        self._connected.set()

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, _mid: int, reason_code: ReasonCode,
                    _properties: Properties | None) -> None:
        with self._cond:
            self.acked += 1
            self.refused += reason_code.is_failure
            self._cond.notify_all()

    def open(self) -> None:
        try:
            self.client.connect(self.target.host, self.target.port, keepalive=30)
        except OSError as exc:
            raise PublishError(f"cannot connect to {self.target.host}:{self.target.port}: {exc}") from exc
        self.client.loop_start()
        if not self._connected.wait(self.timeout_s) or self._error is not None:
            raise PublishError(f"broker {self.target.host}:{self.target.port} refused or did not answer "
                               f"the connection: {self._error or 'timeout'}")

    def send(self, topic: str, payload: bytes, retain: bool) -> None:
        self._wait(lambda: self.sent - self.acked < self.window)
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        # NO_CONN: paho keeps QoS 1 messages and sends them once it has reconnected.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        with self._cond:
            self.sent += 1

    def drain(self) -> None:
        self._wait(lambda: self.acked >= self.sent)

    def _wait(self, done: Callable[[], bool]) -> None:
        with self._cond:
            progress, deadline = self.acked, time.monotonic() + self.timeout_s
            while not done():
                if self.acked != progress:  # the timeout is for a stall, not for the whole backlog
                    progress, deadline = self.acked, time.monotonic() + self.timeout_s
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PublishError(f"{self.sent - self.acked} message(s) not acknowledged within "
                                       f"{self.timeout_s} s")
                self._cond.wait(min(left, 0.5))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True, slots=True)
class Progress:
    messages_sent: int
    acknowledged: int
    expected_points: int
    sim_ms: int
    elapsed_s: float


class _Pacer:
    def __init__(self, pacing: Pacing, start_ms: int, stop: threading.Event) -> None:
        self.pacing, self.start_ms, self.stop = pacing, start_ms, stop
        self.t0 = time.monotonic()

    def wait(self, index: int, sim_ms: int) -> bool:
        """Sleep until message ``index`` is due; False once asked to stop."""
        if self.pacing.rate is not None:
            due = self.t0 + index / self.pacing.rate
        elif self.pacing.speed > 0:
            due = self.t0 + (sim_ms - self.start_ms) / 1000 / self.pacing.speed
        else:
            return not self.stop.is_set()
        delay = due - time.monotonic()
        return not (self.stop.wait(delay) if delay > 0 else self.stop.is_set())


class _Links:
    """The run's connections: one shared, plus one per device when asked (each with its last will)."""

    def __init__(self, target: MqttTarget, factory: ClientFactory, base_id: str, *, window: int,
                 timeout_s: float, credentials: Credentials | None = None) -> None:
        self._target, self._factory, self._base_id = target, factory, base_id
        self._window, self._timeout_s = window, timeout_s
        self._credentials = credentials
        self.all: list[_Connection] = []
        self.own: dict[str, _Connection] = {}
        # With per-device credentials (a broker with ACLs) there is no shared connection: each device
        # speaks only for itself, as in the field.
        self.shared = None if credentials else self._open("", None)

    def _open(self, suffix: str, will: tuple[str, bytes] | None, target: MqttTarget | None = None) -> _Connection:
        conn = _Connection(self._factory(self._base_id + suffix), target or self._target, will=will,
                           window=self._window, timeout_s=self._timeout_s)
        self.all.append(conn)  # before open(): a failed connect is still closed
        conn.open()
        return conn

    def open_per_device(self, offline: Iterable[SimMessage], *, will: bool) -> None:
        for message in offline:
            target = None
            if self._credentials is not None:
                username, password = self._credentials(message.device_id)
                target = replace(self._target, username=username, password=password)
            self.own[message.device_id] = self._open(f"-{message.device_id}", (message.topic, OFFLINE) if will
                                                     else None, target)

    def send(self, message: SimMessage) -> None:
        conn = self.own.get(message.device_id, self.shared)
        if conn is None:
            raise PublishError(f"no credential for device {message.device_id!r} (not in the inventory)")
        conn.send(message.topic, message.payload, message.retain)

    @property
    def acked(self) -> int:
        return sum(c.acked for c in self.all)

    @property
    def refused(self) -> int:
        return sum(c.refused for c in self.all)

    def drain(self) -> None:
        for conn in self.all:
            conn.drain()

    def close(self) -> None:
        for conn in self.all:
            conn.close()


def publish(sim: DistrictSimulator, target: MqttTarget | str, *,  # noqa: PLR0913 - keyword-only options
            client_id: str | None = None, per_device_connections: bool = False, status: bool = True,
            window: int = 1000, timeout_s: float = 30.0, stop: threading.Event | None = None,
            progress: Callable[[Progress], None] | None = None,
            client_factory: ClientFactory = new_client, credentials: Credentials | None = None) -> Summary:
    """Publish the run with QoS 1 and return once the broker has acknowledged every message.

    One MQTT connection carries all devices, so the broker's last will cannot be per device: births
    ("online", retained) are published at start and "offline" (retained) at a clean stop. With
    ``per_device_connections`` each device gets its own connection and a real last will (small runs).
    Setting ``stop`` ends the run early, still cleanly (offline, drain, disconnect).
    ``credentials`` (device id -> username, password) is for a broker with per-device ACLs: every device
    then gets its own connection with its own credential and last will.
    """
    target = MqttTarget.from_url(target) if isinstance(target, str) else target
    stop = stop or threading.Event()
    summary = sim.new_summary()
    t0 = time.monotonic()
    links: _Links | None = None
    try:
        links = _Links(target, client_factory, client_id or f"ct-sim-{sim.seed}-{os.getpid()}", window=window,
                       timeout_s=timeout_s, credentials=credentials)
        if per_device_connections or credentials is not None:
            links.open_per_device(sim.offline_messages(), will=status)
        for message in sim.birth_messages() if status else ():
            links.send(message)
            summary.status_messages += 1
        _send_all(sim, summary, links, _Pacer(sim.pacing, sim.start_ms, stop), progress)
        for message in sim.offline_messages() if status else ():
            links.send(message)
            summary.status_messages += 1
        links.drain()
        summary.interrupted = stop.is_set()
    except PublishError as exc:
        exc.summary = summary
        raise
    finally:
        if links is not None:
            links.close()
        summary.wall_s = round(time.monotonic() - t0, 3)
    if progress is not None:
        progress(Progress(summary.messages_sent, links.acked, summary.expected_points,
                          summary.last_ts_ms or sim.start_ms, summary.wall_s))
    if links.refused:
        raise PublishError(f"the broker refused {links.refused} message(s) (PUBACK reason code)", summary)
    return summary


def _send_all(sim: DistrictSimulator, summary: Summary, links: _Links, pacer: _Pacer,
              progress: Callable[[Progress], None] | None) -> None:
    last_report = time.monotonic()
    for index, message in enumerate(sim.messages()):
        if not pacer.wait(index, message.sim_ms):
            return
        links.send(message)
        summary.add(message)
        if progress is not None and time.monotonic() - last_report >= 1.0:
            last_report = time.monotonic()
            progress(Progress(summary.messages_sent, links.acked, summary.expected_points, message.sim_ms,
                              round(last_report - pacer.t0, 3)))
