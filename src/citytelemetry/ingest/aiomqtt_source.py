"""The aiomqtt MQTT source (``mqtt.client = "aiomqtt"``): aiomqtt on paho-mqtt 2.x, MQTT 5, manual acks.

Kept beside the faster ``mqtt5_source`` as the reference implementation on the libraries the field
knows; both pass the same integration tests.

aiomqtt 2.x has no public API for manual acknowledgement (aiomqtt issue #345). paho-mqtt 2.x has one
(``manual_ack_set`` / ``ack``), so we switch it on on the paho client that aiomqtt wraps, before
connecting, and acknowledge through ``AckTracker``. This is the one place that reaches into aiomqtt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from citytelemetry.config import MqttSettings
from citytelemetry.contracts import InboundMessage
from citytelemetry.ingest.acks import AckTracker
from citytelemetry.ingest.broker import BrokerError, SourceState, endpoint, filters, tls_context

log = logging.getLogger(__name__)


def _connect_properties(settings: MqttSettings) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = settings.session_expiry_s  # keep the session (and its queue) across restarts
    props.ReceiveMaximum = settings.receive_maximum  # unacked messages the broker may have in flight to us
    return props


class AiomqttSource:
    """One connection = one session attachment. Re-create it to reconnect; it refuses re-entry."""

    def __init__(self, settings: MqttSettings, *, connect_timeout_s: float = 10.0) -> None:
        self._settings = settings
        self.state = SourceState.NEW
        password = settings.password.get_secret_value() if settings.password else None
        self._client = aiomqtt.Client(
            settings.host, settings.port, username=settings.username, password=password,
            identifier=settings.client_id, protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,  # resume the persistent session: unacked messages are redelivered
            keepalive=settings.keepalive_s, timeout=connect_timeout_s,
            properties=_connect_properties(settings), tls_context=tls_context(settings),
            # Unbounded: aiomqtt would otherwise silently discard messages when its queue is full.
            # Not bounded by ReceiveMaximum in practice: while a resumed session's backlog is being
            # acknowledged, paho was measured decoding far beyond the window (983 MiB peak draining
            # 200k messages, docs/performance.md); the mqtt5 source pauses reads instead.
            max_queued_incoming_messages=0,
        )
        paho_client: paho.Client = self._client._client  # noqa: SLF001 - see module docstring
        paho_client.manual_ack_set(on=True)
        self._paho = paho_client
        self.acks = AckTracker(self._ack)

    def _ack(self, mid: int, qos: int) -> None:
        self._paho.ack(mid, qos)

    async def __aenter__(self) -> Self:
        if self.state is not SourceState.NEW:
            raise RuntimeError("an AiomqttSource connects once; create a new one to reconnect")
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as err:
            raise BrokerError(f"cannot connect to {endpoint(self._settings)}: {err}") from err
        self.state = SourceState.CONNECTED
        try:
            for topic_filter in filters(self._settings):
                await self._client.subscribe(topic_filter, qos=1)
        except BaseException as err:
            await self.__aexit__(None, None, None)
            if isinstance(err, aiomqtt.MqttError):
                raise BrokerError(f"subscribe failed: {err}") from err
            raise
        log.info("connected to %s as %s (aiomqtt), subscribed to %s", endpoint(self._settings),
                 self._settings.client_id, filters(self._settings))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.state is SourceState.CLOSED:
            return
        self.state = SourceState.CLOSED
        acked_any = self.acks.acked > 0
        self.acks.close()
        if acked_any and exc_type is None:
            await self._barrier()
        try:
            await self._client.__aexit__(exc_type, exc, tb)
        except aiomqtt.MqttError as err:  # already gone: nothing left to close
            log.debug("disconnect: %s", err)

    async def _barrier(self) -> None:
        """One request and its answer before DISCONNECT: the broker handles a connection's packets in
        order, so its UNSUBACK proves it has processed every PUBACK we sent. paho closes the socket right
        after writing DISCONNECT; mosquitto 2.0.11 then dropped PUBACKs it had not read yet when the same
        client id reconnected at once, and redelivered settled messages (tests/integration/
        test_mqtt_sources.py). The filter is one we never subscribe to, so no subscription changes."""
        try:
            await self._client.unsubscribe(f"{self._settings.topic_prefix}/_ct_ack_barrier", timeout=5.0)
        except aiomqtt.MqttError as err:  # leaving anyway: at worst the broker redelivers (at-least-once)
            log.debug("ack barrier before disconnect: %s", err)

    @property
    def in_flight(self) -> int:
        return self.acks.in_flight

    async def messages(self) -> AsyncIterator[InboundMessage]:
        track = self.acks.track
        try:
            async for message in self._client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                yield InboundMessage(topic=message.topic.value, payload=payload,
                                     received_ms=time.time_ns() // 1_000_000,
                                     delivery=track(message.mid, message.qos))
        except aiomqtt.MqttError as err:
            raise BrokerError(f"connection to {endpoint(self._settings)} lost: {err}") from err

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout_s: float = 5.0) -> None:
        try:
            await self._client.publish(topic, payload, qos=qos, timeout=timeout_s)
        except aiomqtt.MqttError as err:
            raise BrokerError(f"publish to {topic!r} failed: {err}") from err
