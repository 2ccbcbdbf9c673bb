"""``_SessionProtocol`` (the mqtt5 source's session) on a recording fake transport, fed real packet bytes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import mqtt5
import pytest

from citytelemetry.ingest.broker import BrokerError
from citytelemetry.ingest.mqtt5_source import _SessionProtocol

QOS1 = mqtt5.QoS.AT_LEAST_ONCE


class FakeTransport(asyncio.Transport):
    """Records what the protocol asks of its transport; ``calls`` holds everything but the bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.calls: list[str] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def pause_reading(self) -> None:
        self.calls.append("pause_reading")

    def resume_reading(self) -> None:
        self.calls.append("resume_reading")

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.calls.append("abort")
        self.closing = True


def session(high_water: int = 100) -> tuple[_SessionProtocol, FakeTransport]:
    protocol, transport = _SessionProtocol(high_water), FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


def publish(topic: str, payload: bytes, packet_id: int) -> bytes:
    return mqtt5.PublishPacket(topic, payload, qos=QOS1, packet_id=packet_id).write()


def chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` cut into pieces of the given sizes, cycling through them."""
    offset, turn = 0, 0
    while offset < len(data):
        size = sizes[turn % len(sizes)]
        yield data[offset:offset + size]
        offset, turn = offset + size, turn + 1


def inbox_contents(protocol: _SessionProtocol) -> list[tuple[str, bytes, int | None]]:
    return [(packet.topic, packet.payload, packet.packet_id) for packet, _, _ in protocol.inbox]


def failed_with(protocol: _SessionProtocol) -> BrokerError:
    """The session's error, also taken from ``connack`` (``fail`` sets it there for a pending connect)."""
    assert protocol.error is not None
    assert protocol.connack.exception() is protocol.error
    return protocol.error


MESSAGES = [
    ("ct/v1/s1/tunnel/d1/telemetry", b'{"seq": 1}', 1),
    ("ct/v1/s1/tunnel/d2/telemetry", b"", 2),  # an empty payload
    ("ct/v1/s2/station/d3/status", b"online", 3),
    ("ct/v1/s2/station/d4/telemetry", b"x" * 300, 4),  # a 2-byte remaining length
    ("ct/v1/s3/network/d5/telemetry", bytes(range(256)) * 80, 5),  # 20 KiB: a 3-byte remaining length
    ("ct/v1/s3/network/d6/telemetry", b"last", 65535),
]


@pytest.mark.parametrize("sizes", [[1], [2], [7], [1, 5, 2, 64, 3], [10**6]],
                         ids=["byte-by-byte", "2", "7", "irregular", "all-at-once"])
async def test_packets_split_across_reads_decode_in_order(sizes: list[int]) -> None:
    protocol, transport = session()
    stream = b"".join(publish(*message) for message in MESSAGES[:3])
    stream += mqtt5.PingRespPacket().write()  # control packets between publishes are consumed, not queued
    stream += b"".join(publish(*message) for message in MESSAGES[3:])

    for piece in chunks(stream, sizes):
        protocol.data_received(piece)

    assert inbox_contents(protocol) == MESSAGES
    assert protocol._buffer == bytearray()
    assert protocol.error is None
    assert transport.calls == []


async def test_a_partial_packet_waits_for_its_rest() -> None:
    protocol, _ = session()
    first, second = publish("a/b", b"one", 1), publish("a/b", b"two", 2)

    protocol.data_received(first + second[:4])
    assert inbox_contents(protocol) == [("a/b", b"one", 1)]
    assert protocol._buffer == bytearray(second[:4])

    protocol.data_received(second[4:])
    assert inbox_contents(protocol) == [("a/b", b"one", 1), ("a/b", b"two", 2)]
    assert protocol._buffer == bytearray()


@pytest.mark.parametrize(("high_water", "resume_at"), [(4, 2), (5, 2), (1, 0)])
async def test_reading_pauses_at_high_water_and_resumes_at_half(high_water: int, resume_at: int) -> None:
    protocol, transport = session(high_water)
    for packet_id in range(1, high_water):
        protocol.data_received(publish("a/b", b"m", packet_id))
    assert (transport.calls, protocol.paused) == ([], False)

    protocol.data_received(publish("a/b", b"m", high_water))
    assert (transport.calls, protocol.paused) == (["pause_reading"], True)
    protocol.data_received(publish("a/b", b"m", high_water + 1))  # bytes already on their way still land
    assert (transport.calls, len(protocol.inbox)) == (["pause_reading"], high_water + 1)

    while len(protocol.inbox) > resume_at + 1:
        protocol.inbox.popleft()
        protocol.consumed()
        assert transport.calls == ["pause_reading"]
    protocol.inbox.popleft()
    protocol.consumed()
    assert (transport.calls, protocol.paused, len(protocol.inbox)) == (["pause_reading", "resume_reading"], False,
                                                                        resume_at)
    while protocol.inbox:
        protocol.inbox.popleft()
        protocol.consumed()
    assert transport.calls == ["pause_reading", "resume_reading"]


async def test_silence_while_paused_does_not_count_against_the_broker() -> None:
    protocol, _ = session(1)
    protocol.data_received(publish("a/b", b"m", 1))
    assert protocol.paused
    protocol.last_received -= 3600  # an hour with reads paused: the broker's packets waited in the socket
    protocol.inbox.popleft()
    before = time.monotonic()
    protocol.consumed()
    assert not protocol.paused
    assert protocol.last_received >= before  # the keepalive check starts over from the resume


async def test_a_waiting_consumer_wakes_when_a_publish_arrives() -> None:
    protocol, _ = session()
    waiting = asyncio.create_task(protocol.wait_for_messages())
    await asyncio.sleep(0)
    assert not waiting.done()

    protocol.data_received(publish("a/b", b"m", 1))

    await asyncio.wait_for(waiting, 1)
    assert inbox_contents(protocol) == [("a/b", b"m", 1)]


@pytest.mark.parametrize("garbage", [b"\x00\x00", b"\x30\x02\x00\x05", b"\x30\xff\xff\xff\xff\x01"],
                         ids=["packet-type-0", "topic-past-the-end", "remaining-length-overflow"])
async def test_a_malformed_packet_fails_the_session(garbage: bytes) -> None:
    protocol, transport = session()
    protocol.data_received(publish("a/b", b"before", 1) + garbage)

    error = failed_with(protocol)
    assert str(error).startswith("malformed or unexpected packet from the broker: ")
    assert transport.calls == ["abort"]


async def test_a_qos2_publish_fails_the_session() -> None:
    protocol, transport = session()
    packet = mqtt5.PublishPacket("a/b", b"m", qos=mqtt5.QoS.EXACTLY_ONCE, packet_id=9).write()

    protocol.data_received(packet)

    assert str(failed_with(protocol)) == ("malformed or unexpected packet from the broker: QoS 2 PUBLISH on our "
                                          "QoS 1 subscription (the broker must downgrade)")
    assert transport.calls == ["abort"]
    assert list(protocol.inbox) == []


@pytest.mark.parametrize(("packet", "message"), [
    (mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER, reason_str="another client"),
     ("the broker disconnected us (SESSION_TAKEN_OVER: another client): another client connected with our client "
     "id and took our session")),
    (mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.SERVER_SHUTTING_DOWN),
     "the broker disconnected us (SERVER_SHUTTING_DOWN)"),
    (mqtt5.PubRelPacket(1), "unexpected PubRelPacket from the broker"),
], ids=["disconnect-with-reason-string", "disconnect", "pubrel"])
async def test_a_disconnect_or_unexpected_packet_from_the_broker_fails_the_session(packet: Any, message: str) -> None:
    protocol, transport = session()

    protocol.data_received(packet.write())

    assert str(failed_with(protocol)) == message
    assert transport.calls == ["abort"]


async def test_send_coalesces_the_writes_of_one_loop_turn_in_order() -> None:
    protocol, transport = session()
    acks = [mqtt5.PubAckPacket(packet_id).write() for packet_id in (1, 2, 3, 4)]

    for ack in acks[:3]:
        protocol.send(ack)
    assert transport.writes == []
    await asyncio.sleep(0)  # one loop turn: the flush scheduled by the first send runs
    protocol.send(acks[3])
    await asyncio.sleep(0)

    assert transport.writes == [acks[0] + acks[1] + acks[2], acks[3]]


async def test_nothing_is_written_to_a_closing_transport() -> None:
    protocol, transport = session()
    transport.closing = True

    protocol.send(mqtt5.PubAckPacket(1).write())
    await asyncio.sleep(0)

    assert transport.writes == []


async def test_suback_and_puback_resolve_the_reply_registered_under_their_packet_id() -> None:
    protocol, _ = session()
    loop = asyncio.get_running_loop()
    subscribe_reply, publish_reply, other = loop.create_future(), loop.create_future(), loop.create_future()
    protocol.replies.update({3: subscribe_reply, 4: publish_reply, 5: other})

    protocol.data_received(mqtt5.PubAckPacket(4).write()
                           + mqtt5.SubAckPacket(3, [mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE]).write()
                           + mqtt5.PubAckPacket(99).write())  # nobody waits for 99: ignored

    suback, puback = subscribe_reply.result(), publish_reply.result()
    assert isinstance(suback, mqtt5.SubAckPacket)
    assert (suback.packet_id, suback.reason_codes) == (3, [mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE])
    assert isinstance(puback, mqtt5.PubAckPacket)
    assert (puback.packet_id, puback.reason_code) == (4, mqtt5.PubAckReasonCode.SUCCESS)
    assert not other.done()
    assert protocol.replies == {5: other}
    assert protocol.error is None


async def test_connack_resolves_the_connect() -> None:
    protocol, _ = session()

    protocol.data_received(mqtt5.ConnAckPacket(session_present=True, receive_max=20).write())

    connack = protocol.connack.result()
    assert (connack.reason_code, connack.session_present, connack.receive_max) == (
        mqtt5.ConnAckReasonCode.SUCCESS, True, 20)


async def test_fail_wakes_every_waiter_with_the_first_error_and_aborts_once() -> None:
    protocol, transport = session()
    loop = asyncio.get_running_loop()
    replies = {1: loop.create_future(), 2: loop.create_future()}
    protocol.replies.update(replies)
    waiting = asyncio.create_task(protocol.wait_for_messages())
    await asyncio.sleep(0)
    first, second = BrokerError("first"), BrokerError("second")

    protocol.fail(first)
    protocol.fail(second)

    assert [reply.exception() for reply in replies.values()] == [first, first]
    assert protocol.replies == {}
    assert failed_with(protocol) is first
    assert transport.calls == ["abort"]
    await asyncio.wait_for(waiting, 1)  # the consumer wakes to find the error


async def test_connection_lost_fails_the_session_and_resolves_closed() -> None:
    protocol, _ = session()

    protocol.connection_lost(ConnectionResetError("reset by peer"))

    assert str(failed_with(protocol)) == "connection lost: reset by peer"
    assert protocol.closed.done()
