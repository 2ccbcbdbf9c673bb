"""Bytes from the broker -> the session's inbox of PUBLISH packets -> inbound messages, in bulk.

Compiled with mypyc (scripts/compile_hotpath.py): both loops run once per message (callgrind, in process:
taking messages in batches saved ~8k instructions a W1 message with the pump's batches, the packet loop
~0.6k).
Packets are the ``mqtt5`` codec's (or ``mqtt311``'s, which reads the same shapes).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from citytelemetry.ingest.acks import AckTracker
from citytelemetry.records import InboundMessage

# (PUBLISH packet of the mqtt5 codec, its QoS, received at epoch ms), in receive order
Inbox = deque[tuple[Any, int, int]]
ReadPacket = Callable[[memoryview], tuple[Any, int]]  # the codec's read: (packet, bytes it took); IndexError: torn


def read_packets(view: memoryview, offset: int, read: ReadPacket, publish: object, inbox: Inbox,
                 received_ms: int, room: int, controls: list[Any]) -> tuple[int, bool]:
    """Decode the complete packets of ``view`` from ``offset`` on, in order: PUBLISHes (of type ``publish``)
    into ``inbox`` while ``room`` lasts (negative: no limit), the others into ``controls``. Returns the
    offset reached and whether a PUBLISH was left for want of room. ValueError: a QoS 2 PUBLISH."""
    end = len(view)
    while offset < end:
        try:
            packet, size = read(view[offset:])
        except IndexError:  # the rest of a packet is still on its way
            break
        if type(packet) is publish:
            qos: int = packet.qos.value
            if qos > 1:
                raise ValueError("QoS 2 PUBLISH on our QoS 1 subscription (the broker must downgrade)")
            if room == 0:
                return offset, True
            inbox.append((packet, qos, received_ms))
            room -= 1
        else:
            controls.append(packet)
        offset += size
    return offset, False


def take(inbox: Inbox, acks: AckTracker, limit: int) -> list[InboundMessage]:
    """Up to ``limit`` messages off the front of ``inbox``, each tracked for its acknowledgement."""
    taken: list[InboundMessage] = []
    while inbox and len(taken) < limit:
        packet, qos, received_ms = inbox.popleft()
        taken.append(InboundMessage(packet.topic, packet.payload, received_ms, acks.track(packet.packet_id or 0, qos)))
    return taken
