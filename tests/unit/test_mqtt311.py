"""The MQTT 3.1.1 packets of ``ingest.mqtt311`` (bytes from the 3.1.1 spec's layouts), and the session on them."""

from __future__ import annotations

import mqtt5
import pytest

from citytelemetry.ingest import mqtt311
from citytelemetry.ingest.mqtt5_source import V5, V311, _SessionProtocol

from .test_mqtt5_session import FakeTransport, failed_with

QOS1 = mqtt5.QoS.AT_LEAST_ONCE


def publish311(topic: str, payload: bytes, packet_id: int) -> bytes:
    return mqtt311.publish(topic, payload, qos=1, packet_id=packet_id)


def test_connect_keeps_the_session_and_carries_the_credentials() -> None:
    assert mqtt311.connect("c1", keep_alive=30) == bytes.fromhex("100e00044d5154540400001e0002" + "6331")
    with_login = mqtt311.connect("c1", keep_alive=30, username="u", password=b"pw")
    assert with_login == bytes.fromhex("101500044d515454" + "04c0001e" + "00026331" + "000175" + "00027077")
    assert mqtt311.connect("c1", keep_alive=5, clean_session=True)[9] == 0x02


def test_subscribe_and_publish() -> None:
    assert mqtt311.subscribe(7, ["a/+", "b/#"]) == bytes.fromhex("820e0007" + "0003612f2b01" + "0003622f2301")
    assert mqtt311.publish("a/b", b"hi") == bytes.fromhex("30070003612f62" + "6869")
    assert mqtt311.publish("a/b", b"hi", qos=1, packet_id=258) == bytes.fromhex("32090003612f620102" + "6869")
    with pytest.raises(ValueError, match="packet id"):
        mqtt311.publish("a/b", b"", qos=1)


def test_a_long_publish_has_a_multi_byte_remaining_length() -> None:
    payload = bytes(range(256)) * 80  # 20 KiB
    packet, size = mqtt311.read(memoryview(publish311("a/b", payload, 5)))
    assert isinstance(packet, mqtt5.PublishPacket)
    assert (packet.topic, packet.payload, packet.qos, packet.packet_id, size) == ("a/b", payload, QOS1, 5,
                                                                                 len(payload) + 11)


@pytest.mark.parametrize(("code", "reason"), [
    (0, mqtt5.ConnAckReasonCode.SUCCESS),
    (1, mqtt5.ConnAckReasonCode.UNSUPPORTED_PROTOCOL_VERSION),
    (2, mqtt5.ConnAckReasonCode.CLIENT_ID_NOT_VALID),
    (3, mqtt5.ConnAckReasonCode.SERVER_UNAVAILABLE),
    (4, mqtt5.ConnAckReasonCode.BAD_USER_NAME_OR_PASSWORD),
    (5, mqtt5.ConnAckReasonCode.NOT_AUTHORIZED),
])
def test_connack_return_codes_become_the_mqtt5_reason_codes(code: int, reason: mqtt5.ConnAckReasonCode) -> None:
    packet, size = mqtt311.read(memoryview(bytes([0x20, 2, 1, code])))
    assert isinstance(packet, mqtt5.ConnAckPacket)
    assert (packet.reason_code, packet.session_present, size) == (reason, True, 4)


def test_suback_puback_pingresp() -> None:
    suback, _ = mqtt311.read(memoryview(bytes.fromhex("9004000701" + "80")))
    assert isinstance(suback, mqtt5.SubAckPacket)
    assert (suback.packet_id, suback.reason_codes) == (7, [mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE,
                                                           mqtt5.SubAckReasonCode.UNSPECIFIED_ERROR])
    puback, _ = mqtt311.read(memoryview(bytes.fromhex("40020009")))
    assert isinstance(puback, mqtt5.PubAckPacket)
    assert puback.packet_id == 9
    assert isinstance(mqtt311.read(memoryview(b"\xd0\x00"))[0], mqtt5.PingRespPacket)
    # byte for byte the same in both versions, so the codec's stay in use
    assert mqtt5.PubAckPacket(9).write() == bytes.fromhex("40020009")
    assert mqtt5.PingReqPacket().write() == b"\xc0\x00"
    assert mqtt5.DisconnectPacket().write() == b"\xe0\x00"


@pytest.mark.parametrize("data", [b"\x30", b"\x30\x05\x00\x03a/", b"\x30\x80"])
def test_an_incomplete_packet_is_an_index_error(data: bytes) -> None:
    with pytest.raises(IndexError):
        mqtt311.read(memoryview(data))


@pytest.mark.parametrize("data", [b"\x20\x02\x00\x09", b"\x90\x03\x00\x01\x07", b"\xe0\x00", b"\x30\x02\x00\x05",
                                  b"\x30\xff\xff\xff\xff\x01"],
                         ids=["connack-code-9", "suback-code-7", "disconnect", "topic-past-the-end", "length-overflow"])
def test_a_malformed_or_unexpected_packet_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        mqtt311.read(memoryview(data))


async def test_a_3_1_1_refusal_of_our_mqtt5_connect_is_read_as_unsupported_protocol_version() -> None:
    protocol = _SessionProtocol(10, version=V5)
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.data_received(bytes([0x20, 2, 0, 1]))  # what NATS 2.9 answers
    assert protocol.connack.result().reason_code is mqtt5.ConnAckReasonCode.UNSUPPORTED_PROTOCOL_VERSION


class Unsettled:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


async def test_the_3_1_1_window_holds_publishes_in_the_buffer_until_messages_are_settled() -> None:
    unsettled = Unsettled()
    protocol = _SessionProtocol(3, version=V311, unsettled=unsettled)
    transport = FakeTransport()
    protocol.connection_made(transport)
    stream = b"".join(publish311("a/b", f"m{i}".encode(), i) for i in range(1, 6)) + b"\xd0\x00"
    protocol.data_received(stream)
    assert [p.payload for p, _, _ in protocol.inbox] == [b"m1", b"m2", b"m3"]
    assert (protocol.held, transport.calls) == (True, ["pause_reading"])

    for _ in range(3):  # consumed, not settled: the window is still full
        protocol.inbox.popleft()
        protocol.consumed()
        unsettled.count += 1
    protocol.release()
    assert (len(protocol.inbox), protocol.held) == (0, True)

    unsettled.count = 1  # two settled
    protocol.release()
    assert [p.payload for p, _, _ in protocol.inbox] == [b"m4", b"m5"]
    assert protocol.held is False  # the PINGRESP behind them was read too
    assert transport.calls == ["pause_reading", "resume_reading"]
    assert protocol._buffer == bytearray()
    assert protocol.error is None


async def test_an_mqtt5_session_holds_what_a_broker_sends_beyond_our_receive_maximum() -> None:
    # A broker should keep our receive maximum; mosquitto 2.0.11 resuming a backlog did not (7,679 against 2,000).
    unsettled = Unsettled()
    protocol = _SessionProtocol(2, version=V5, unsettled=unsettled)
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.data_received(b"".join(mqtt5.PublishPacket("a/b", f"m{i}".encode(), qos=QOS1, packet_id=i).write()
                                    for i in range(1, 5)))
    assert [p.payload for p, _, _ in protocol.inbox] == [b"m1", b"m2"]
    assert (protocol.held, transport.calls) == (True, ["pause_reading"])

    protocol.inbox.clear()
    protocol.consumed()
    unsettled.count = 1  # one of the two settled
    protocol.release()
    assert [p.payload for p, _, _ in protocol.inbox] == [b"m3"]
    assert protocol.held is True
    assert protocol.error is None


async def test_a_qos2_publish_fails_a_3_1_1_session() -> None:
    protocol = _SessionProtocol(10, version=V311)
    protocol.connection_made(FakeTransport())
    protocol.data_received(mqtt311.publish("a/b", b"m", qos=1, packet_id=1).replace(b"\x32", b"\x34", 1))
    assert "QoS 2 PUBLISH" in str(failed_with(protocol))
