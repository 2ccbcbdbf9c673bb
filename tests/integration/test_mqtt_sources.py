"""Both MQTT sources (``mqtt.client`` = mqtt5 and aiomqtt) against a real mosquitto: the ``BrokerSource`` contract.

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
from pathlib import Path

import pytest
from pydantic import SecretStr

from citytelemetry.config import MqttSettings
from citytelemetry.contracts import InboundMessage
from citytelemetry.ingest.broker import BrokerError, BrokerSource
from citytelemetry.ingest.factory import open_source
from citytelemetry.services import ManagedService, definitions, free_port
from tests.conftest import MqttBroker

from .conftest import MqttProbeClient, SecureBroker

pytestmark = pytest.mark.integration
CLIENTS = ["mqtt5", "aiomqtt"]
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

    def __init__(self, broker: MqttBroker, prefix: str) -> None:
        self.topic = f"{prefix}/site1/tunnel/dev1/telemetry"
        self._probe = MqttProbeClient(broker.port, None, None, ca_file=None)
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


@pytest.fixture
def devices(mosquitto: MqttBroker, mqtt_topic_prefix: str) -> Iterator[Devices]:
    publisher = Devices(mosquitto, mqtt_topic_prefix)
    yield publisher
    publisher.close()


def source_settings(broker: MqttBroker, prefix: str, client: str, **update: object) -> MqttSettings:
    base = MqttSettings(url=broker.url, topic_prefix=prefix, client_id=f"ct-src-{uuid.uuid4().hex[:10]}",
                        session_expiry_s=60)
    return base.model_copy(update={"client": client, **update})


@pytest.fixture(params=CLIENTS)
def settings(request: pytest.FixtureRequest, mosquitto: MqttBroker, mqtt_topic_prefix: str) -> MqttSettings:
    client: str = request.param
    return source_settings(mosquitto, mqtt_topic_prefix, client)


def payloads(count: int) -> list[bytes]:
    return [f"m{i:04}".encode() for i in range(count)]


async def test_unsettled_messages_are_redelivered_to_the_same_session_and_settled_ones_are_not(
        settings: MqttSettings, devices: Devices) -> None:
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
        await devices.publish(b"marker-1")
        await inbox.through(b"marker-1")
        assert inbox.payloads == [*sent[3:], b"marker-1"]
        await inbox.barrier()

    async with attached(settings) as inbox:  # everything was settled the second time
        await devices.publish(b"marker-2")
        await inbox.through(b"marker-2")
        assert inbox.payloads == [b"marker-2"]


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
        settings: MqttSettings, devices: Devices) -> None:
    async with attached(settings) as inbox:
        await devices.publish(b"first", b"second")
        first, second = await inbox.count(2)
        second.delivery.settle()
        assert inbox.source.in_flight == 2
        await inbox.barrier()

    async with attached(settings) as inbox:  # neither PUBACK went out: both come again
        await devices.publish(b"marker-1")
        first, second, marker = await inbox.through(b"marker-1")
        assert inbox.payloads == [b"first", b"second", b"marker-1"]
        second.delivery.settle()
        first.delivery.settle()
        marker.delivery.settle()
        assert inbox.source.in_flight == 0
        await inbox.barrier()

    async with attached(settings) as inbox:  # settling the first released both
        await devices.publish(b"marker-2")
        await inbox.through(b"marker-2")
        assert inbox.payloads == [b"marker-2"]


# Closing the socket right after DISCONNECT lost PUBACKs on a prompt reconnect with the same client id
# (mosquitto: "already connected, closing old connection" before the last "Received PUBACK"), and the
# broker redelivered what was settled. mqtt5 waits for the broker to close; aiomqtt does a round trip first.
@pytest.mark.parametrize("client", ["mqtt5", "aiomqtt"])
async def test_acks_due_when_leaving_reach_the_broker_before_a_prompt_reconnect(
        mosquitto: MqttBroker, mqtt_topic_prefix: str, devices: Devices, client: str) -> None:
    settings = source_settings(mosquitto, mqtt_topic_prefix, client, receive_maximum=BURST)
    sent = payloads(BURST)
    async with attached(settings) as inbox:
        await devices.publish(*sent)
        for message in await inbox.count(BURST):
            message.delivery.settle()  # and leave at once, without a barrier

    async with attached(settings) as inbox:
        await devices.publish(b"marker")
        await inbox.through(b"marker")
        assert inbox.payloads == [b"marker"]


async def test_publish_at_qos1_reaches_a_subscriber(settings: MqttSettings, mosquitto: MqttBroker,
                                                   mqtt_topic_prefix: str) -> None:
    topic = f"{mqtt_topic_prefix}/deadletter/not_json"
    subscriber = MqttProbeClient(mosquitto.port, None, None, ca_file=None)
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


async def test_nothing_listening_is_a_broker_error(settings: MqttSettings) -> None:
    port = free_port()
    with pytest.raises(BrokerError, match=rf"^cannot connect to 127\.0\.0\.1:{port}: "):
        async with open_source(settings.model_copy(update={"url": f"mqtt://127.0.0.1:{port}"}),
                               connect_timeout_s=WAIT_S):
            pass


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_wrong_password_is_a_broker_error(secure_broker: SecureBroker, client: str) -> None:
    good = secure_broker.creds.pipeline_mqtt(secure_broker.settings.mqtt).model_copy(
        update={"client": client, "client_id": f"ct-src-{uuid.uuid4().hex[:10]}", "session_expiry_s": 0})
    async with open_source(good, connect_timeout_s=WAIT_S) as source:  # the control: the right password works
        assert source.state.value == "connected"

    wrong = good.model_copy(update={"password": SecretStr("not-the-password")})
    endpoint = f"127.0.0.1:{secure_broker.port}"
    expected = {"mqtt5": f"{endpoint} refused the connection: NOT_AUTHORIZED",  # mosquitto answers 0x87
                "aiomqtt": f"cannot connect to {endpoint}: [code:135] Not authorized"}[client]
    with pytest.raises(BrokerError) as refused:
        async with open_source(wrong, connect_timeout_s=WAIT_S):
            pass
    assert str(refused.value) == expected


async def test_a_shared_subscription_splits_the_messages_between_its_members(
        mosquitto: MqttBroker, mqtt_topic_prefix: str, devices: Devices) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    one, two = (source_settings(mosquitto, mqtt_topic_prefix, "mqtt5", shared_group=group) for _ in range(2))
    sent = payloads(20)
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


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_hung_broker_is_detected_by_keepalive(tmp_path: Path, client: str) -> None:
    """A broker that stops answering (process frozen, network black hole) must end ``messages()`` with
    ``BrokerError`` within about 1.5 keepalive intervals, so that the pipeline reconnects and pages."""
    keepalive_s = 5  # the smallest the settings allow
    with ManagedService(definitions.mosquitto(tmp_path / "services", free_port())) as broker:
        settings = MqttSettings(url=f"mqtt://127.0.0.1:{broker.spec.port}", client_id=f"ct-hang-{client}",
                                keepalive_s=keepalive_s, session_expiry_s=0, client=client)  # type: ignore[arg-type]
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
