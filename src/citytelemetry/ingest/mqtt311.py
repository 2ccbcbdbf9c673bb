"""The MQTT 3.1.1 packets that differ from MQTT 5, read into and written from the ``mqtt5`` codec's types.

Why our own: the ``mqtt5`` codec (0.8) encodes and decodes MQTT 5 only: ``ConnectPacket`` has no protocol
level, and reading a 3.1.1 CONNACK fails ("Invalid ConnAckReasonCode value: 1"). Brokers that speak only
3.1.1 (NATS's MQTT listener, amqtt, Azure IoT Hub, many embedded ones) are common, and the session logic
(persistent session, in-order PUBACKs after durable, keepalive) is the same in both versions. What differs
on the wire is small: 3.1.1 has no properties and no reason strings, so this module writes CONNECT,
SUBSCRIBE and PUBLISH, and reads CONNACK, PUBLISH, PUBACK, SUBACK and PINGRESP, returning the codec's
packet objects so that ``mqtt5_source`` handles both versions with one code path. PUBACK (``40 02 id``),
PINGREQ (``c0 00``) and DISCONNECT (``e0 00``) are byte for byte the same in both and stay the codec's.

A 3.1.1 CONNACK return code becomes the MQTT 5 reason code that MQTT 5 §3.2.2.2 maps it to.
"""

from __future__ import annotations

import mqtt5

PROTOCOL_LEVEL = 4  # MQTT 3.1.1 (MQTT 5 is 5)
# MQTT 3.1.1 §3.2.2.3 return codes -> the MQTT 5 reason codes of the same meaning
CONNACK_CODES = {
    0: mqtt5.ConnAckReasonCode.SUCCESS,
    1: mqtt5.ConnAckReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    2: mqtt5.ConnAckReasonCode.CLIENT_ID_NOT_VALID,
    3: mqtt5.ConnAckReasonCode.SERVER_UNAVAILABLE,
    4: mqtt5.ConnAckReasonCode.BAD_USER_NAME_OR_PASSWORD,
    5: mqtt5.ConnAckReasonCode.NOT_AUTHORIZED,
}
SUBACK_CODES = {0: mqtt5.SubAckReasonCode.GRANTED_QOS_AT_MOST_ONCE, 1: mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE,
                2: mqtt5.SubAckReasonCode.GRANTED_QOS_EXACTLY_ONCE, 0x80: mqtt5.SubAckReasonCode.UNSPECIFIED_ERROR}
# The 3.1.1 broker keeps no receive maximum of ours and announces none of its own: a window for our
# notices that every broker allows (mosquitto's default max_inflight_messages is 20).
PUBLISH_WINDOW = 10


def _length(size: int) -> bytes:
    out = bytearray()
    while True:
        size, digit = divmod(size, 128)
        out.append(digit | 0x80 if size else digit)
        if not size:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    if len(data) > 0xFFFF:
        raise ValueError("an MQTT string holds at most 65,535 bytes")
    return len(data).to_bytes(2, "big") + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _length(len(body)) + body


def connect(client_id: str, *, keep_alive: int, username: str | None = None, password: bytes | None = None,
            clean_session: bool = False) -> bytes:
    """CONNECT (§3.1). ``clean_session=False``: the broker keeps the session, and redelivers its unacked."""
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    flags |= 0x02 if clean_session else 0
    body = _string("MQTT") + bytes([PROTOCOL_LEVEL, flags]) + keep_alive.to_bytes(2, "big") + _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return _packet(0x10, body)


def subscribe(packet_id: int, topic_filters: list[str], qos: int = 1) -> bytes:
    """SUBSCRIBE (§3.8): every filter at ``qos``."""
    body = packet_id.to_bytes(2, "big") + b"".join(_string(f) + bytes([qos]) for f in topic_filters)
    return _packet(0x82, body)


def unsubscribe(packet_id: int, topic_filters: list[str]) -> bytes:
    """UNSUBSCRIBE (§3.10)."""
    return _packet(0xA2, packet_id.to_bytes(2, "big") + b"".join(_string(f) for f in topic_filters))


def publish(topic: str, payload: bytes, *, qos: int = 0, packet_id: int | None = None) -> bytes:
    """PUBLISH (§3.3) at QoS 0 or 1."""
    header = _string(topic)
    if qos:
        if packet_id is None:
            raise ValueError("a QoS 1 PUBLISH needs a packet id")
        header += packet_id.to_bytes(2, "big")
    return _packet(0x30 | qos << 1, header + payload)


def _fixed_header(buffer: memoryview) -> tuple[int, int]:
    """(remaining length, header size); ``IndexError`` while the header is incomplete (as ``mqtt5.read``)."""
    size, shift = 0, 0
    for index in range(1, 5):
        byte = buffer[index]  # IndexError: more bytes to come
        size |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return size, index + 1
        shift += 7
    raise ValueError("remaining length longer than 4 bytes")


def read(buffer: memoryview) -> tuple[mqtt5.Packet, int]:
    """One packet from the broker and its size; ``IndexError`` if incomplete, ``ValueError`` if malformed."""
    length, start = _fixed_header(buffer)
    end = start + length
    if len(buffer) < end:
        raise IndexError("incomplete packet")
    kind, flags, body = buffer[0] >> 4, buffer[0] & 0x0F, buffer[start:end]
    if kind == 3:
        return _read_publish(flags, body), end
    if kind == 4 and length == 2:
        return mqtt5.PubAckPacket(int.from_bytes(body, "big")), end
    if kind == 9 and length >= 3:
        codes = [SUBACK_CODES.get(code) for code in body[2:]]
        if None in codes:
            raise ValueError(f"invalid SUBACK return code in {bytes(body[2:]).hex()}")
        return mqtt5.SubAckPacket(int.from_bytes(body[:2], "big"), [c for c in codes if c is not None]), end
    if kind == 11 and length == 2:  # UNSUBACK (no reason codes in 3.1.1)
        return mqtt5.UnsubAckPacket(int.from_bytes(body, "big"), []), end
    if kind == 2:
        return read_connack(body), end
    if kind == 13 and length == 0:
        return mqtt5.PingRespPacket(), end
    raise ValueError(f"unexpected MQTT 3.1.1 packet type {kind} (remaining length {length})")


def read_connack(body: memoryview) -> mqtt5.ConnAckPacket:
    if len(body) != 2:
        raise ValueError(f"a 3.1.1 CONNACK has 2 bytes, not {len(body)}")
    code = CONNACK_CODES.get(body[1])
    if code is None:
        raise ValueError(f"invalid CONNACK return code {body[1]}")
    return mqtt5.ConnAckPacket(session_present=bool(body[0] & 1), reason_code=code, receive_max=PUBLISH_WINDOW)


def _read_publish(flags: int, body: memoryview) -> mqtt5.PublishPacket:
    qos = flags >> 1 & 3
    if len(body) < 2:
        raise ValueError("PUBLISH without a topic")
    topic_end = 2 + int.from_bytes(body[:2], "big")
    packet_id = None
    payload_start = topic_end
    if qos:
        payload_start += 2
        if len(body) < payload_start:
            raise ValueError("PUBLISH shorter than its topic and packet id")
        packet_id = int.from_bytes(body[topic_end:payload_start], "big")
    if len(body) < topic_end:
        raise ValueError("PUBLISH shorter than its topic")
    try:
        topic = bytes(body[2:topic_end]).decode()
    except UnicodeDecodeError:
        raise ValueError("PUBLISH topic is not UTF-8") from None
    return mqtt5.PublishPacket(topic, bytes(body[payload_start:]), qos=mqtt5.QoS(qos), packet_id=packet_id,
                               duplicate=bool(flags & 8), retain=bool(flags & 1))


def connack_of_either(buffer: memoryview) -> tuple[mqtt5.ConnAckPacket, int] | None:
    """A 3.1.1 CONNACK at the start of ``buffer`` in answer to our MQTT 5 CONNECT, or ``None``.

    A 3.1.1-only broker answers an MQTT 5 CONNECT with its own CONNACK, return code 1 (unacceptable
    protocol version; NATS 2.9 does). Its remaining length is 2, where an MQTT 5 CONNACK has at least 3
    (the property length), so the two cannot be confused.
    """
    if len(buffer) >= 4 and buffer[0] == 0x20 and buffer[1] == 2:
        return read_connack(buffer[2:4]), 4
    return None
