"""The default MQTT source: an asyncio protocol on the ``mqtt5`` packet codec, MQTT 5 or 3.1.1.

Why not aiomqtt on this path: measured side by side (bench/RESULTS.md, 2026-11-28), a bare aiomqtt
subscriber drains 9k msg/s here, paho builds a ``Properties`` object and an ``MQTTMessageInfo`` with a
``threading.Condition`` for every PUBLISH and reads the fixed header one ``recv`` at a time; the same
subscriber on the ``mqtt5`` Rust codec (the codec aiomqtt 3 is built on) drains 460k+ msg/s. Packet
encoding and decoding stay the codec's; this module keeps only the session, which aiomqtt 2 does not
let us control anyway (manual acks reach into paho):

- CONNECT with ``clean_start=False``, a session expiry and our receive maximum; CONNACK checked.
- SUBSCRIBE at QoS 1, SUBACK checked filter by filter; ``subscribe``/``unsubscribe`` change the set on
  the open connection (a partitioned member after a reload: ``ingest.member``).
- QoS 1 PUBLISH in; PUBACKs only when settled, in receive order (``AckTracker``, which also writes
  them), coalesced into one socket write per event-loop turn.
- Back-pressure: no PUBLISH is taken from the socket while ``receive_maximum`` messages are received and
  unsettled (reading pauses, TCP pushes back), so memory is bounded by the window even if a broker sends
  more than it should (mosquitto 2.0.11 does, resuming a session with a backlog).
- Keepalive: PINGREQ every half interval; the connection is declared dead if the broker sends
  nothing for 1.5 intervals while we are reading.
- Our own QoS 1 publishes (dead-letter notices) wait for their PUBACK.

MQTT 3.1.1 (``mqtt.protocol``; ``auto`` tries 5 first): the codec speaks only 5, so ``mqtt311`` writes
and reads the few packets that differ. The session is the same: ``clean session = 0`` keeps it (for as
long as the broker keeps persistent sessions: 3.1.1 has no session expiry of ours), PUBACKs after settle,
in order. 3.1.1 has no receive maximum either: there our own window is the only one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Self

import mqtt5

from citytelemetry.config import MqttSettings
from citytelemetry.contracts import InboundMessage
from citytelemetry.ingest import inbox as inbox_
from citytelemetry.ingest import mqtt311, partition
from citytelemetry.ingest.acks import AckTracker
from citytelemetry.ingest.broker import (
    BrokerError,
    ConnectRefusedError,
    SessionTakenOverError,
    SourceState,
    endpoint,
    filters,
    refusal,
    tls_context,
)

log = logging.getLogger(__name__)
DISCONNECT_WAIT_S = 2.0
FAILURE = 0x80  # MQTT 5 reason codes from 0x80 up are failures
V5, V311 = "5", "3.1.1"
TAKE_AT_ONCE = 256  # messages ``messages()`` takes from the session per step
ATTEMPTS = {"5": (V5,), "3.1.1": (V311,), "auto": (V5, V311)}  # mqtt.protocol -> versions to try, in order


class _SessionProtocol(asyncio.Protocol):
    """Bytes in -> packets; PUBLISH packets queue in ``inbox`` for ``Mqtt5Source.messages``."""

    def __init__(self, high_water: int, *, version: str = V5, unsettled: Callable[[], int] | None = None,
                 acks: AckTracker | None = None) -> None:
        self._buffer = bytearray()
        self._acks = acks  # the PUBACKs due go out with every write
        self._high_water = high_water
        self._low_water = high_water // 2
        self.version = version
        self._read = mqtt5.read if version == V5 else mqtt311.read
        # Our own receive window (received + unsettled), in both versions: 3.1.1 has no receive maximum, and
        # an MQTT 5 broker should keep ours but need not: mosquitto 2.0.11 resuming a session with a backlog
        # had 7,679 messages unacknowledged with us against a receive maximum of 2,000 (bench part c, W1).
        self._unsettled = unsettled
        self.transport: asyncio.Transport | None = None
        self.inbox: inbox_.Inbox = deque()
        self.paused = False  # reading paused: the inbox is at high water
        self.held = False  # reading paused: our receive window is full (PUBLISHes wait in the buffer)
        self.last_received = time.monotonic()
        self.error: BrokerError | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.connack: asyncio.Future[mqtt5.ConnAckPacket] = asyncio.get_running_loop().create_future()
        self.replies: dict[int, asyncio.Future[mqtt5.Packet]] = {}  # SUBACK, UNSUBACK, PUBACK by packet id
        self._waiter: asyncio.Future[None] | None = None
        self._outgoing: list[bytes] = []
        self._flush_scheduled = False
        self.before_write: Callable[[], None] | None = None  # e.g. the device-state journal, ahead of PUBACKs

    # -- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer.extend(data)
        self.last_received = time.monotonic()
        try:
            consumed = self._read_packets(buffer, time.time_ns() // 1_000_000)
        except ValueError as err:
            self.fail(BrokerError(f"malformed or unexpected packet from the broker: {err}"))
            return
        del buffer[:consumed]
        inbox = self.inbox
        if len(inbox) >= self._high_water and not self.paused and self.transport is not None:
            self.paused = True
            if not self.held:
                self.transport.pause_reading()
        if inbox:
            self._wake()

    def _read_packets(self, buffer: bytearray, received_ms: int) -> int:
        """Decode every complete packet in ``buffer``; returns how many bytes they took."""
        offset = 0
        unsettled = self._unsettled  # PUBLISHes beyond our window stay in the buffer
        room = -1 if unsettled is None else max(0, self._high_water - len(self.inbox) - unsettled())
        controls: list[mqtt5.Packet] = []
        with memoryview(buffer) as view:
            if not self.connack.done() and self.version == V5:
                either = mqtt311.connack_of_either(view)  # a 3.1.1-only broker's refusal
                if either is not None:
                    self._control(either[0])
                    offset = either[1]
            offset, full = inbox_.read_packets(view, offset, self._read, mqtt5.PublishPacket, self.inbox,
                                               received_ms, room, controls)
        for packet in controls:
            self._control(packet)
        if full:
            self._hold()  # this PUBLISH and what follows stay in the buffer
        return offset

    def _hold(self) -> None:
        if not self.held and self.transport is not None:
            self.held = True
            if not self.paused:
                self.transport.pause_reading()

    def release(self) -> None:
        """Messages were settled; take the PUBLISHes waiting in the buffer, then read again."""
        unsettled = self._unsettled
        if (not self.held or self.error is not None
                or (unsettled is not None and len(self.inbox) + unsettled() >= self._high_water)):
            return
        self.held = False
        self.data_received(b"")  # may take part of the buffer and hold again (pausing is idempotent)
        if not self.held and not self.paused and self.transport is not None:
            self.last_received = time.monotonic()  # the silence while held was ours
            self.transport.resume_reading()

    def stop_holding(self) -> None:
        self._unsettled = None
        self.held = False

    @property
    def reading_paused(self) -> bool:
        """Packets may wait unread in the socket: silence from the broker proves nothing."""
        return self.paused or self.held

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(BrokerError(f"connection lost: {exc}" if exc else "connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    # -- control packets -------------------------------------------------------------------------
    def _control(self, packet: mqtt5.Packet) -> None:
        if isinstance(packet, mqtt5.ConnAckPacket):
            if not self.connack.done():
                self.connack.set_result(packet)
        elif isinstance(packet, mqtt5.SubAckPacket | mqtt5.PubAckPacket | mqtt5.UnsubAckPacket):
            reply = self.replies.pop(packet.packet_id, None)
            if reply is not None and not reply.done():
                reply.set_result(packet)
        elif isinstance(packet, mqtt5.DisconnectPacket):
            reason = f"{packet.reason_code.name}{f': {packet.reason_str}' if packet.reason_str else ''}"
            if packet.reason_code is mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER:
                self.fail(SessionTakenOverError(f"the broker disconnected us ({reason}): another client connected "
                                           "with our client id and took our session"))
            else:
                self.fail(BrokerError(f"the broker disconnected us ({reason})"))
        elif not isinstance(packet, mqtt5.PingRespPacket):  # PINGRESP only refreshes last_received
            self.fail(BrokerError(f"unexpected {type(packet).__name__} from the broker"))

    def fail(self, error: BrokerError) -> None:
        """The session is over: wake every waiter with the first error and drop the connection."""
        if self.error is None:
            self.error = error
        if not self.connack.done():
            self.connack.set_exception(self.error)
        for reply in self.replies.values():
            if not reply.done():
                reply.set_exception(self.error)
        self.replies.clear()
        self._wake()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    # -- consumer side ---------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_for_messages(self) -> None:
        if self.error is None and not self.inbox:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def consumed(self) -> None:
        if self.paused and len(self.inbox) <= self._low_water and self.transport is not None:
            self.paused = False
            # Silence while paused was ours, not the broker's: the keepalive check starts over.
            self.last_received = time.monotonic()
            if not self.held:
                self.transport.resume_reading()

    # -- writing ---------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue bytes for this loop turn's single write."""
        self._outgoing.append(data)
        self.schedule_flush()

    def schedule_flush(self) -> None:
        """One write per loop turn: PUBACKs settle in bursts of one group commit (``AckTracker.outgoing``)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        acks = self._acks
        if acks is not None and acks.outgoing:
            self._outgoing.append(acks.take())
        if self._outgoing and self.transport is not None and not self.transport.is_closing():
            if self.before_write is not None:
                self.before_write()
            self.transport.write(b"".join(self._outgoing))
        self._outgoing.clear()
        if self.held:  # what was acknowledged frees our own receive window
            self.release()


class Mqtt5Source:
    """One connection = one session attachment (``BrokerSource``). Re-create it to reconnect."""

    def __init__(self, settings: MqttSettings, *, connect_timeout_s: float = 10.0,
                 topic_filters: list[str] | None = None, unsubscribe: list[str] | None = None,
                 on_refused: Callable[[list[tuple[str, str]]], None] | None = None) -> None:
        self._settings = settings
        self._on_refused = on_refused  # told the filters the broker refused at connect (topic, reason)
        self._connect_timeout_s = connect_timeout_s
        # None: the wildcard filters of the topic scheme; a partitioned member gives its devices' topics,
        # and what a resumed session may still hold from another partitioning to unsubscribe.
        self._filters = filters(settings) if topic_filters is None else topic_filters
        self._unsubscribe = unsubscribe or []
        self.state = SourceState.NEW
        self._protocol: _SessionProtocol | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._resubscribing: asyncio.Task[None] | None = None
        self._next_packet_id = 0
        self._publish_slots = asyncio.Semaphore(1)
        self.acks = AckTracker(self._acks_due)
        self.session_present = False
        self.before_write: Callable[[], None] | None = None  # called before every write to the broker

    @property
    def in_flight(self) -> int:
        return self.acks.in_flight

    def _session(self) -> _SessionProtocol:
        if self._protocol is None or self.state is not SourceState.CONNECTED:
            raise BrokerError("not connected")
        return self._protocol

    def _acks_due(self) -> None:
        session = self._protocol
        if session is not None:
            session.schedule_flush()

    def _packet_id(self, session: _SessionProtocol) -> int:
        while True:
            self._next_packet_id = self._next_packet_id % 65535 + 1
            if self._next_packet_id not in session.replies:
                return self._next_packet_id

    # -- lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self.state is not SourceState.NEW:
            raise RuntimeError("an Mqtt5Source connects once; create a new one to reconnect")
        self.state = SourceState.CONNECTED
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._negotiate()
                await self._subscribe()
        except BaseException as err:
            await self.__aexit__(None, None, None)
            if isinstance(err, TimeoutError):
                raise BrokerError(f"no answer from {endpoint(self._settings)} within "
                                  f"{self._connect_timeout_s:g} s") from err
            if isinstance(err, OSError):
                raise BrokerError(f"cannot connect to {endpoint(self._settings)}: {err}") from err
            raise
        log.info("connected to %s as %s (MQTT %s, session %s), subscribed to %s", endpoint(self._settings),
                 self._settings.client_id, self.version, "resumed" if self.session_present else "new",
                 self._filters if len(self._filters) <= 4 else f"{len(self._filters)} topics")
        return self

    @property
    def version(self) -> str:
        """The MQTT version of this connection ("5" or "3.1.1")."""
        return self._protocol.version if self._protocol is not None else ATTEMPTS[self._settings.protocol][0]

    async def _negotiate(self) -> None:
        versions = ATTEMPTS[self._settings.protocol]
        for version in versions:
            try:
                await self._connect(version)
            except ConnectRefusedError as err:
                if err.code != "UNSUPPORTED_PROTOCOL_VERSION" or version == versions[-1]:
                    raise
                log.info("%s does not speak MQTT %s; trying %s", endpoint(self._settings), version, versions[-1])
                await self._drop()
            else:
                return

    async def _drop(self) -> None:
        """Close a connection the broker refused (it may already have closed it)."""
        session, self._protocol = self._protocol, None
        if session is not None and session.transport is not None:
            session.transport.abort()
            await session.closed

    async def _connect(self, version: str) -> None:
        settings = self._settings
        context = tls_context(settings)
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: _SessionProtocol(settings.receive_maximum, version=version, unsettled=self._unsettled,
                                     acks=self.acks),
            settings.host, settings.port, ssl=context, server_hostname=settings.host if context else None)
        self._protocol = protocol
        protocol.before_write = self._before_write
        password = settings.password.get_secret_value().encode() if settings.password else None
        if version == V5:
            protocol.send(mqtt5.ConnectPacket(
                settings.client_id, username=settings.username, password=password,
                clean_start=False,  # resume the persistent session: unacked messages are redelivered
                keep_alive=settings.keepalive_s, session_expiry_interval=settings.session_expiry_s,
                receive_max=settings.receive_maximum).write())
        else:
            protocol.send(mqtt311.connect(settings.client_id, keep_alive=settings.keepalive_s,
                                          username=settings.username, password=password))
        connack = await protocol.connack
        if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            raise refusal(settings, connack.reason_code.name, version, connack.reason_str)
        self.session_present = connack.session_present
        # The broker's own limit on QoS 1 messages we may have in flight to it (our notices).
        self._publish_slots = asyncio.Semaphore(max(1, connack.receive_max))
        keepalive = connack.server_keep_alive or settings.keepalive_s
        self._keepalive = asyncio.create_task(self._keep_alive(protocol, keepalive), name="mqtt-keepalive")

    def _before_write(self) -> None:
        if self.before_write is not None:
            self.before_write()

    def _unsettled(self) -> int:
        return self.acks.in_flight

    async def _subscribe(self) -> None:
        if not self.session_present:
            await self._change_subscriptions()
            return
        # A resumed session already holds our subscriptions, and the broker sends its backlog at CONNACK.
        # Once that fills our receive maximum, mosquitto 2.0.11 answers nothing more (SUBACK, UNSUBACK,
        # not even PINGRESP) until we acknowledge, and we acknowledge only what is consumed: awaiting every
        # batch here timed out each connect, forever (bench part d: partitioned members over 16,000 queued
        # messages each). So the batches are confirmed while messages flow; a refusal ends the connection.
        self._resubscribing = asyncio.create_task(self._change_subscriptions(), name="mqtt-resubscribe")
        self._resubscribing.add_done_callback(self._resubscribed)

    def _resubscribed(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None and self._protocol is not None:
            self._protocol.fail(error if isinstance(error, BrokerError) else BrokerError(f"re-subscribing: {error}"))

    async def _change_subscriptions(self) -> None:
        # Subscribe first, unsubscribe after: in between, a message matches one or the other and queues.
        refused = await self.subscribe(self._filters)
        if refused and len(refused) == len(self._filters):  # nothing would come: retry, and say why
            topic_filter, code = refused[0]
            raise BrokerError(f"every subscription refused, e.g. {topic_filter!r}: {code}")
        if refused:
            # Some: those devices' messages reach no member until the ACL allows them, but one device missing
            # from an ACL must not keep every other device of this member unread (as retrying would).
            for topic_filter, code in refused:
                log.error("the broker refused the subscription to %s (%s): its messages reach no member; "
                          "allow it (ACL) and reload", topic_filter, code)
            if self._on_refused is not None:
                self._on_refused(refused)
        if self.session_present:
            await self.unsubscribe(self._unsubscribe)

    async def subscribe(self, topic_filters: list[str], *, timeout_s: float | None = None) -> list[tuple[str, str]]:
        """SUBSCRIBE at QoS 1, ``partition.FILTERS_PER_SUBSCRIBE`` filters a packet; returns the filters the
        broker refused with its reason code's name (an ACL says ``NOT_AUTHORIZED``), for the caller to
        report. ``BrokerError`` when the connection is lost or no SUBACK comes within ``timeout_s``."""
        refused: list[tuple[str, str]] = []
        for wanted in partition.batches(topic_filters):
            refused += await self._subscribe_batch(wanted, timeout_s)
        return refused

    async def unsubscribe(self, topic_filters: list[str], *, timeout_s: float | None = None) -> list[tuple[str, str]]:
        """UNSUBSCRIBE in batches; returns the filters an MQTT 5 broker refused with its reason (3.1.1 has none)."""
        refused: list[tuple[str, str]] = []
        for unwanted in partition.batches(topic_filters):
            refused += await self._unsubscribe_batch(unwanted, timeout_s)
        return refused

    async def _unsubscribe_batch(self, unwanted: list[str], timeout_s: float | None) -> list[tuple[str, str]]:
        unsuback = await self._request(lambda pid: mqtt5.UnsubscribePacket(pid, unwanted).write(),
                                       lambda pid: mqtt311.unsubscribe(pid, unwanted), timeout_s)
        if not isinstance(unsuback, mqtt5.UnsubAckPacket):
            raise BrokerError(f"the broker answered UNSUBSCRIBE with {type(unsuback).__name__}")
        # 0x11 (no subscription existed) is no failure; a 3.1.1 UNSUBACK carries no codes at all
        return [(f, code.name) for f, code in zip(unwanted, unsuback.reason_codes, strict=False)
                if code.value >= FAILURE]

    async def _request(self, v5: Callable[[int], bytes], v311: Callable[[int], bytes],
                       timeout_s: float | None = None) -> mqtt5.Packet:
        """Send the packet built for this connection's version with a fresh packet id; await the reply."""
        session = self._session()
        packet_id = self._packet_id(session)
        reply: asyncio.Future[mqtt5.Packet] = asyncio.get_running_loop().create_future()
        session.replies[packet_id] = reply
        session.send(v5(packet_id) if session.version == V5 else v311(packet_id))
        try:
            async with asyncio.timeout(timeout_s):
                return await reply
        except TimeoutError as err:
            session.replies.pop(packet_id, None)
            raise BrokerError(f"no answer from the broker to packet {packet_id} within {timeout_s:g} s") from err

    async def _subscribe_batch(self, wanted: list[str], timeout_s: float | None) -> list[tuple[str, str]]:
        topic_filters = [mqtt5.TopicFilter(f, max_qos=mqtt5.QoS.AT_LEAST_ONCE) for f in wanted]
        suback = await self._request(lambda pid: mqtt5.SubscribePacket(pid, topic_filters).write(),
                                     lambda pid: mqtt311.subscribe(pid, wanted), timeout_s)
        if not isinstance(suback, mqtt5.SubAckPacket):
            raise BrokerError(f"the broker answered SUBSCRIBE with {type(suback).__name__}")
        return [(topic_filter, code.name) for topic_filter, code in zip(wanted, suback.reason_codes, strict=True)
                if code.value >= FAILURE]

    async def _keep_alive(self, session: _SessionProtocol, interval_s: int) -> None:
        ping = mqtt5.PingReqPacket().write()
        while session.error is None:
            await asyncio.sleep(interval_s / 2)
            silent_s = time.monotonic() - session.last_received
            # While reads are paused the broker's packets wait in the socket: silence proves nothing.
            if not session.reading_paused and silent_s > interval_s * 1.5:
                session.fail(BrokerError(f"no packet from the broker for {silent_s:.0f} s (keepalive)"))
                return
            session.send(ping)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.state is SourceState.CLOSED:
            return
        self.state = SourceState.CLOSED
        self.acks.close()
        for task in (self._keepalive, self._resubscribing):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        session = self._protocol
        if session is None or session.transport is None:
            return
        if session.error is None:
            session.flush()  # acknowledgements already due go out before we leave
            session.transport.write(mqtt5.DisconnectPacket().write())  # normal: the session is kept
            # Let the broker close: it reads our packets in order, so once it has closed, it has processed
            # every PUBACK before the DISCONNECT. Closing first lost them on a prompt reconnect: mosquitto
            # 2.0.11 handled the new CONNECT before it had read all of the old socket, took the session over
            # and dropped the unread rest, PUBACKs included (tests/integration/test_mqtt_sources.py).
            if not session.connack.done():  # no session yet, nothing acked: do not wait on a silent broker
                session.transport.close()
            elif session.reading_paused:  # a paused transport would not see the broker's close
                session.paused = False
                session.stop_holding()  # nothing is consumed any more: read on to the broker's close
                session.transport.resume_reading()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DISCONNECT_WAIT_S):
                await asyncio.shield(session.closed)
        if not session.closed.done():  # no close from the broker within the bound: drop the connection
            session.transport.abort()
            await session.closed

    # -- data ------------------------------------------------------------------------------------
    def take_ready(self, limit: int) -> list[InboundMessage]:
        """Up to ``limit`` received messages, without waiting ([] if none); raises the session's error.
        After a connection loss what is still queued is dropped: it was never acknowledged, so the
        broker redelivers it on the next session."""
        session = self._session()
        if session.error is not None:
            raise session.error
        taken = inbox_.take(session.inbox, self.acks, limit)
        if taken:
            session.consumed()
        return taken

    async def wait_ready(self) -> None:
        """Until a message is received or the connection is lost."""
        await self._session().wait_for_messages()

    def check(self) -> None:
        """Raise the session's error if the connection was lost (after the consumer awaited)."""
        session = self._session()
        if session.error is not None:
            raise session.error

    async def messages(self) -> AsyncIterator[InboundMessage]:
        while True:
            taken = self.take_ready(TAKE_AT_ONCE)
            if not taken:
                await self.wait_ready()
                continue
            for message in taken:
                self.check()  # not one more message from a lost connection
                yield message

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout_s: float = 5.0) -> None:
        session = self._session()
        if qos == 0:
            session.send(mqtt5.PublishPacket(topic, payload).write() if session.version == V5
                         else mqtt311.publish(topic, payload))
            return
        if qos != 1:
            raise ValueError("the pipeline publishes at QoS 0 or 1")
        async with self._publish_slots:
            packet_id = self._packet_id(session)
            reply = session.replies[packet_id] = asyncio.get_running_loop().create_future()
            session.send(mqtt5.PublishPacket(topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE,
                                             packet_id=packet_id).write() if session.version == V5
                         else mqtt311.publish(topic, payload, qos=1, packet_id=packet_id))
            try:
                async with asyncio.timeout(timeout_s):
                    puback = await reply
            except TimeoutError as err:
                session.replies.pop(packet_id, None)
                raise BrokerError(f"no PUBACK for {topic!r} within {timeout_s:g} s") from err
        if isinstance(puback, mqtt5.PubAckPacket) and puback.reason_code.value >= FAILURE:
            raise BrokerError(f"the broker refused a publish to {topic!r}: {puback.reason_code.name}")
