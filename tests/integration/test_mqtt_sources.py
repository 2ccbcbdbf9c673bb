"""The MQTT source contract suite: what any ``BrokerSource`` must do, against real brokers.

One production source remains (``ingest/mqtt5_source.py``); the suite runs it over every protocol and
broker we support: mosquitto with MQTT 5, mosquitto with MQTT 3.1.1, and NATS's MQTT listener, which
speaks only 3.1.1 (reached with ``mqtt.protocol = "auto"``, so the fallback is under test too). The
aiomqtt source was retired: aiomqtt 2.5 has no public manual acknowledgement, so it could only pass by
reaching into ``client._client`` (docs/performance.md).

What is acknowledged is observed the way the broker shows it: by what it redelivers when the same
client id reconnects. A marker published after reconnecting closes each redelivery: the broker resends
its in-flight messages at CONNACK, before anything newer, so the messages up to the marker are exactly
what it still held for us.

mosquitto (2.0.11) reads a connection's packets a few at a time, and when a client id reconnects it
takes the session over and drops what it had not yet read from the old connection, PUBACKs included.
So before leaving, a test that observes acknowledgement (not that race) waits for ``barrier``: a QoS 1
publish on the same connection, whose PUBACK comes only once the broker has processed everything sent
before it. The race has its own test (``test_acks_due_when_leaving_reach_the_broker_before_a_prompt_reconnect``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from citytelemetry.config import MqttSettings
from citytelemetry.contracts import InboundMessage
from citytelemetry.ingest.broker import BrokerError, BrokerSource, ConnectRefusedError
from citytelemetry.ingest.factory import open_source
from citytelemetry.ingest.watch import ConnectionWatch
from citytelemetry.services import ManagedService, definitions, free_port
from tests.conftest import MqttBroker

from .conftest import MqttProbeClient, SecureBroker

pytestmark = pytest.mark.integration
# (broker fixture, mqtt.protocol, the version the source must end up speaking)
# (broker fixture, mqtt.protocol, the version the source must end up speaking, when the broker redelivers)
TARGETS = {"mosquitto-5": ("mosquitto", "5", "5", 0.0), "mosquitto-3.1.1": ("mosquitto", "3.1.1", "3.1.1", 0.0),
           "nats-auto": ("nats_mqtt", "auto", "3.1.1", 3.0)}
PROTOCOLS = ["5", "3.1.1"]  # for the tests that need mosquitto itself (its config, its process)
WAIT_S = 5.0  # bound of every wait for something that should happen
QUIET_S = 0.5  # how long we watch for something that should not happen
BURST = 5000  # PUBACKs sent at once: more than mosquitto reads before it handles a new CONNECT


class Inbox:
    """Pumps ``source.messages()`` into ``messages`` from a task, so that a test can wait with a bound."""

    def __init__(self, source: BrokerSource, prefix: str, *, settle: bool = False) -> None:
        self.source = source
        self.barrier_topic = f"{prefix}/barrier"  # outside the subscriptions
        self.messages: list[InboundMessage] = []
        self.settle_on_receipt = settle
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._pump(), name="test-inbox")
        self._task.add_done_callback(lambda _: self._changed.set())

    async def _pump(self) -> None:
        async for message in self.source.messages():
            self.messages.append(message)
            if self.settle_on_receipt:
                message.delivery.settle()
            self._changed.set()

    @property
    def payloads(self) -> list[bytes]:
        return [message.payload for message in self.messages]

    async def until(self, done: Callable[[], bool], what: str) -> list[InboundMessage]:
        try:
            async with asyncio.timeout(WAIT_S):
                while not done():
                    if self._task.done():
                        self._task.result()  # the source failed: its error
                        raise AssertionError("messages() ended")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {WAIT_S} s; received {self.payloads}") from None
        return self.messages

    async def count(self, n: int) -> list[InboundMessage]:
        return await self.until(lambda: len(self.messages) >= n, f"{n} messages")

    async def through(self, payload: bytes) -> list[InboundMessage]:
        return await self.until(lambda: payload in self.payloads, f"message {payload!r}")

    async def barrier(self) -> None:
        """Return once the broker has processed everything this connection sent (see the module docstring)."""
        await self.source.publish(self.barrier_topic, b"", qos=1, timeout_s=WAIT_S)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def attached(settings: MqttSettings, *, settle: bool = False) -> AsyncIterator[Inbox]:
    """One connection of ``settings.client_id`` to its session, its messages pumped into an ``Inbox``."""
    async with open_source(settings, connect_timeout_s=WAIT_S) as source:
        inbox = Inbox(source, settings.topic_prefix, settle=settle)
        try:
            yield inbox
        finally:
            await inbox.close()


class Devices:
    """A paho client publishing at QoS 1 to one telemetry topic of the test's prefix."""

    def __init__(self, broker: MqttBroker, prefix: str, *, v5: bool = True) -> None:
        self.topic = f"{prefix}/site1/tunnel/dev1/telemetry"
        self._probe = MqttProbeClient(broker.port, None, None, ca_file=None, v5=v5)
        assert not self._probe.connect().is_failure

    async def publish(self, *payloads: bytes) -> None:
        """Publish in order and return once the broker has acknowledged (so queued) every message."""
        await asyncio.to_thread(self._publish, payloads)

    def _publish(self, payloads: tuple[bytes, ...]) -> None:
        sent = [self._probe.client.publish(self.topic, payload, qos=1) for payload in payloads]
        for info in sent:
            info.wait_for_publish(WAIT_S)
            assert info.is_published()

    def close(self) -> None:
        self._probe.close()


@dataclass(frozen=True, slots=True)
class Target:
    broker: MqttBroker
    protocol: str  # mqtt.protocol
    version: str  # what the source must speak there
    redelivery_s: float  # 0: unacknowledged messages come again at CONNACK; else after this (NATS ack_wait)

    @property
    def v5(self) -> bool:
        return self.version == "5"


@pytest.fixture(params=list(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    broker_fixture, protocol, version, redelivery_s = TARGETS[request.param]
    broker: MqttBroker = request.getfixturevalue(broker_fixture)  # NATS starts only when a test needs it
    return Target(broker, protocol, version, redelivery_s)


async def redelivered(inbox: Inbox, target: Target, devices: Devices, expected: list[bytes],
                      marker: bytes) -> list[InboundMessage]:
    """After reconnecting: exactly ``expected`` come again, then ``marker`` (published once they are in).

    mosquitto resends at CONNACK, before anything newer; NATS after its ack_wait, and it also re-sends a
    message still unsettled on the same connection after ack_wait (at least once allows it). So wait for
    what must come, then for the marker, watch one redelivery delay longer for what must not come, and
    on NATS compare the distinct payloads."""
    if expected:
        await inbox.until(lambda: set(expected) <= set(inbox.payloads), f"redelivery of {expected}")
    await devices.publish(marker)
    await inbox.through(marker)
    if target.redelivery_s:
        await asyncio.sleep(target.redelivery_s + QUIET_S)
        assert list(dict.fromkeys(inbox.payloads)) == [*expected, marker]
    else:
        assert inbox.payloads == [*expected, marker]
    return inbox.messages


def settle(inbox: Inbox, payload: bytes) -> None:
    """Settle every copy of ``payload`` received on this connection."""
    for message in inbox.messages:
        if message.payload == payload:
            message.delivery.settle()


@pytest.fixture
def devices(target: Target, mqtt_topic_prefix: str) -> Iterator[Devices]:
    publisher = Devices(target.broker, mqtt_topic_prefix, v5=target.v5)
    yield publisher
    publisher.close()


def source_settings(broker: MqttBroker, prefix: str, protocol: str, **update: object) -> MqttSettings:
    base = MqttSettings(url=broker.url, topic_prefix=prefix, client_id=f"ct-src-{uuid.uuid4().hex[:10]}",
                        session_expiry_s=60)
    return base.model_copy(update={"protocol": protocol, **update})


@pytest.fixture
def settings(target: Target, mqtt_topic_prefix: str) -> MqttSettings:
    return source_settings(target.broker, mqtt_topic_prefix, target.protocol)


def payloads(count: int) -> list[bytes]:
    return [f"m{i:04}".encode() for i in range(count)]


async def test_unsettled_messages_are_redelivered_to_the_same_session_and_settled_ones_are_not(
        target: Target, settings: MqttSettings, devices: Devices) -> None:
    sent = payloads(6)
    async with attached(settings) as inbox:
        await devices.publish(*sent)
        received = await inbox.count(6)
        assert [m.payload for m in received] == sent
        for message in received[:3]:
            message.delivery.settle()
        assert inbox.source.in_flight == 3
        await inbox.barrier()

    async with attached(settings, settle=True) as inbox:
        await redelivered(inbox, target, devices, sent[3:], b"marker-1")
        await inbox.barrier()

    async with attached(settings) as inbox:  # everything was settled the second time
        await redelivered(inbox, target, devices, [], b"marker-2")


async def test_receive_maximum_bounds_the_unsettled_messages_in_flight(settings: MqttSettings,
                                                                       devices: Devices) -> None:
    sent = payloads(20)
    async with attached(settings.model_copy(update={"receive_maximum": 5})) as inbox:
        await devices.publish(*sent)
        first = await inbox.count(5)
        await asyncio.sleep(QUIET_S)  # a sixth would come now if the broker were not holding it back
        assert inbox.payloads == sent[:5]
        assert inbox.source.in_flight == 5

        inbox.settle_on_receipt = True
        for message in first:
            message.delivery.settle()
        await inbox.count(20)
        assert inbox.payloads == sent
        assert inbox.source.in_flight == 0


async def test_a_message_settled_before_an_earlier_one_is_acknowledged_only_with_it(
        target: Target, settings: MqttSettings, devices: Devices) -> None:
    async with attached(settings) as inbox:
        await devices.publish(b"first", b"second")
        _first, second = await inbox.count(2)
        second.delivery.settle()
        assert inbox.source.in_flight == 2
        await inbox.barrier()

    async with attached(settings) as inbox:  # neither PUBACK went out: both come again
        await redelivered(inbox, target, devices, [b"first", b"second"], b"marker-1")
        settle(inbox, b"second")
        assert inbox.source.in_flight == len(inbox.messages)
        settle(inbox, b"first")
        settle(inbox, b"marker-1")
        assert inbox.source.in_flight == 0
        await inbox.barrier()

    async with attached(settings) as inbox:  # settling the first released both
        await redelivered(inbox, target, devices, [], b"marker-2")


# Closing the socket right after DISCONNECT lost PUBACKs on a prompt reconnect with the same client id
# (mosquitto: "already connected, closing old connection" before the last "Received PUBACK"), and the
# broker redelivered what was settled. The source waits for the broker to close. mosquitto only: the race
# is its own, and NATS sends at most its max_ack_pending (1,000) unacknowledged messages, not a BURST.
# On 3.1.1 the window is mosquitto's max_inflight_messages (1,000, deploy/mosquitto.conf.template).
@pytest.mark.parametrize(("protocol", "burst"), [("5", BURST), ("3.1.1", 1000)])
async def test_acks_due_when_leaving_reach_the_broker_before_a_prompt_reconnect(
        mosquitto: MqttBroker, mqtt_topic_prefix: str, protocol: str, burst: int) -> None:
    settings = source_settings(mosquitto, mqtt_topic_prefix, protocol, receive_maximum=burst)
    devices = Devices(mosquitto, mqtt_topic_prefix)
    try:
        sent = payloads(burst)
        async with attached(settings) as inbox:
            await devices.publish(*sent)
            for message in await inbox.count(burst):
                message.delivery.settle()  # and leave at once, without a barrier

        async with attached(settings) as inbox:
            await devices.publish(b"marker")
            await inbox.through(b"marker")
            assert inbox.payloads == [b"marker"]
    finally:
        devices.close()


async def test_publish_at_qos1_reaches_a_subscriber(target: Target, settings: MqttSettings,
                                                   mqtt_topic_prefix: str) -> None:
    topic = f"{mqtt_topic_prefix}/deadletter/not_json"
    subscriber = MqttProbeClient(target.broker.port, None, None, ca_file=None, v5=target.v5)
    try:
        assert not subscriber.connect().is_failure
        assert [rc.value for rc in subscriber.subscribe(f"{mqtt_topic_prefix}/deadletter/#")] == [1]
        async with open_source(settings, connect_timeout_s=WAIT_S) as source:
            await source.publish(topic, b'{"reason": "not_json"}', qos=1)
        deadline = time.monotonic() + WAIT_S
        while not subscriber.messages and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        subscriber.close()
    assert subscriber.messages == [(topic, b'{"reason": "not_json"}')]


async def test_the_source_speaks_the_version_it_was_told_or_the_broker_knows(target: Target,
                                                                             settings: MqttSettings) -> None:
    async with open_source(settings, connect_timeout_s=WAIT_S) as source:
        assert source.version == target.version
    if target.protocol == "3.1.1":
        async with open_source(settings.model_copy(update={"protocol": "auto"}), connect_timeout_s=WAIT_S) as source:
            assert source.version == "5"  # mosquitto speaks both: auto takes 5


async def test_an_mqtt5_only_source_is_refused_by_a_3_1_1_broker_in_words(nats_mqtt: MqttBroker,
                                                                          mqtt_topic_prefix: str) -> None:
    settings = source_settings(nats_mqtt, mqtt_topic_prefix, "5")
    with pytest.raises(ConnectRefusedError) as refused:
        async with open_source(settings, connect_timeout_s=WAIT_S):
            pass
    assert str(refused.value) == (f"127.0.0.1:{nats_mqtt.port} refused the connection: UNSUPPORTED_PROTOCOL_VERSION "
                                  '(the broker does not speak MQTT 5 (mqtt.protocol: "5", "3.1.1" or "auto"))')
    assert refused.value.fatal


async def test_nothing_listening_is_a_broker_error(settings: MqttSettings) -> None:
    port = free_port()
    with pytest.raises(BrokerError, match=rf"^cannot connect to 127\.0\.0\.1:{port}: "):
        async with open_source(settings.model_copy(update={"url": f"mqtt://127.0.0.1:{port}"}),
                               connect_timeout_s=WAIT_S):
            pass


# mosquitto 2.0.11 answers a wrong password with "not authorised" in both versions (0x87; return code 5).
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_wrong_password_is_refused_in_words_and_fatal(secure_broker: SecureBroker, protocol: str) -> None:
    good = secure_broker.creds.pipeline_mqtt(secure_broker.settings.mqtt).model_copy(
        update={"protocol": protocol, "client_id": f"ct-src-{uuid.uuid4().hex[:10]}", "session_expiry_s": 0})
    async with open_source(good, connect_timeout_s=WAIT_S) as source:  # the control: the right password works
        assert source.state.value == "connected"

    wrong = good.model_copy(update={"password": SecretStr("not-the-password")})
    with pytest.raises(ConnectRefusedError) as refused:
        async with open_source(wrong, connect_timeout_s=WAIT_S):
            pass
    assert str(refused.value) == (f"127.0.0.1:{secure_broker.port} refused the connection: NOT_AUTHORIZED (not "
                                  "authorised: the broker refuses these credentials or this client id)")
    assert refused.value.fatal


async def test_a_second_client_with_our_id_takes_the_session_and_we_are_told(target: Target, settings: MqttSettings,
                                                                            devices: Devices) -> None:
    async with attached(settings) as first, attached(settings) as second:
        # MQTT 5 lets the broker say why (DISCONNECT 0x8E: SessionTakenOverError, unit-tested); mosquitto
        # 2.0.11 and NATS just close the older connection, in both versions. ConnectionWatch counts those.
        with pytest.raises(BrokerError, match=r"^connection closed$|SESSION_TAKEN_OVER"):
            await first.until(lambda: False, "the end of the first connection")
        await devices.publish(b"to-the-new-one")
        await second.through(b"to-the-new-one")


async def test_a_shared_subscription_splits_the_messages_between_its_members(
        mosquitto: MqttBroker, mqtt_topic_prefix: str) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    one, two = (source_settings(mosquitto, mqtt_topic_prefix, "5", shared_group=group) for _ in range(2))
    sent = payloads(20)
    devices = Devices(mosquitto, mqtt_topic_prefix)
    try:
        async with attached(one, settle=True) as first, attached(two, settle=True) as second:
            await devices.publish(*sent)
            deadline = time.monotonic() + WAIT_S
            while len(first.messages) + len(second.messages) < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(QUIET_S)  # a duplicate or a 21st would come now
            got_one, got_two = set(first.payloads), set(second.payloads)
            assert got_one
            assert got_two
            assert got_one.isdisjoint(got_two)
            assert len(first.payloads) + len(second.payloads) == 20
            assert got_one | got_two == set(sent)
    finally:
        devices.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_hung_broker_is_detected_by_keepalive(tmp_path: Path, protocol: str) -> None:
    """A broker that stops answering (process frozen, network black hole) must end ``messages()`` with
    ``BrokerError`` within about 1.5 keepalive intervals, so that the pipeline reconnects and pages."""
    keepalive_s = 5  # the smallest the settings allow
    with ManagedService(definitions.mosquitto(tmp_path / "services", free_port())) as broker:
        settings = MqttSettings(url=f"mqtt://127.0.0.1:{broker.spec.port}", client_id=f"ct-hang-{uuid.uuid4().hex[:6]}",
                                keepalive_s=keepalive_s, session_expiry_s=0, protocol=protocol)  # type: ignore[arg-type]
        pid = broker.pid
        assert pid is not None
        async with open_source(settings, connect_timeout_s=WAIT_S) as source:
            os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(BrokerError):
                    await asyncio.wait_for(_drain(source), keepalive_s * 3)
                waited = time.monotonic() - started
            finally:
                os.kill(pid, signal.SIGCONT)
    assert keepalive_s <= waited <= keepalive_s * 2.5


async def _drain(source: BrokerSource) -> None:
    async for _ in source.messages():
        pass


async def test_two_processes_with_one_client_id_are_reported_as_a_takeover(target: Target,
                                                                           settings: MqttSettings) -> None:
    """What the pipeline's reconnect loop sees when a config was copied to a second host: each process
    connects, is knocked off by the other within a second, and reconnects. ``ConnectionWatch`` says so."""
    watch = ConnectionWatch(settings.client_id, closes=3, short_s=5.0)
    reports: list[str] = []
    for _ in range(3):
        async with attached(settings) as ours:
            watch.connected()
            async with attached(settings):  # the other process
                with pytest.raises(BrokerError) as ended:
                    await ours.until(lambda: False, "the end of our connection")
        report = watch.ended(ended.value)
        if report is not None:
            reports.append(report)
    assert len(reports) == 1
    assert f"another client is probably connected with our client id {settings.client_id!r}" in reports[0]


async def test_the_pipeline_stops_with_the_brokers_reason_after_repeated_fatal_refusals(
        secure_broker: SecureBroker) -> None:
    from citytelemetry.config import InfluxSettings
    from citytelemetry.ingest.watch import BrokerGaveUpError
    from citytelemetry.run import build_pipeline

    from .pipeline_harness import pipeline_settings

    mqtt = secure_broker.creds.pipeline_mqtt(secure_broker.settings.mqtt).model_copy(
        update={"password": SecretStr("not-the-password"), "client_id": f"ct-src-{uuid.uuid4().hex[:10]}"})
    settings = pipeline_settings(mqtt.url, mqtt.topic_prefix, InfluxSettings(url="http://127.0.0.1:9"),
                                 shutdown_timeout_s=1.0)  # nothing to flush but a self-metrics line
    settings = settings.model_copy(update={"mqtt": mqtt})
    pipeline = build_pipeline(settings, secure_broker.catalog)
    started = time.monotonic()
    with pytest.raises(BrokerGaveUpError) as gave_up:
        await asyncio.wait_for(pipeline.run(), 30)  # three refusals, 0.5 + ~1 s of backoff between them
    assert time.monotonic() - started < 15
    assert str(gave_up.value) == (f"127.0.0.1:{secure_broker.port} refused the connection: NOT_AUTHORIZED (not "
                                  "authorised: the broker refuses these credentials or this client id); refused "
                                  "3 times in a row, giving up")
