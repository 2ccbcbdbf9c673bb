"""The session's received PUBLISH packets -> inbound messages, taken in bulk by the pump.

Compiled with mypyc (scripts/compile_hotpath.py): it runs once per message, and as an async generator
step per message it cost the interpreter's frame resumption on top of the work (callgrind, W1).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from citytelemetry.ingest.acks import AckTracker
from citytelemetry.records import InboundMessage

# (PUBLISH packet of the mqtt5 codec, its QoS, received at epoch ms), in receive order
Inbox = deque[tuple[Any, int, int]]


def take(inbox: Inbox, acks: AckTracker, limit: int) -> list[InboundMessage]:
    """Up to ``limit`` messages off the front of ``inbox``, each tracked for its acknowledgement."""
    taken: list[InboundMessage] = []
    while inbox and len(taken) < limit:
        packet, qos, received_ms = inbox.popleft()
        taken.append(InboundMessage(packet.topic, packet.payload, received_ms, acks.track(packet.packet_id or 0, qos)))
    return taken
