"""Acknowledge QoS 1 messages only when settled, and in the order they were received.

MQTT 3.1.1 §4.6 and MQTT 5 §4.6 require PUBACKs in receive order, so a settled message waits for
every earlier one. The broker keeps at most "receive maximum" messages unacknowledged in flight to us:
that window is the pipeline's back-pressure, and it bounds memory.

The PUBACKs due are written here, into ``outgoing``, and the session sends them with its next write
(one per event-loop turn). A PUBACK is the same four bytes in MQTT 3.1.1 and 5 (type 0x40, remaining
length 2, packet id; MQTT 5 leaves out a success reason code, §3.4.2.1). Written here rather than by the
codec's ``PubAckPacket(mid).write()`` because it is one per message on the hot path: the codec object, its
write and the interpreted callback per message cost ~4k instructions a W1 message (callgrind).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

PUBACK = 0x40
# The PUBACK of every packet id, made on first use (bytes((...)) per message cost ~900 instructions):
# at most 65,535 four-byte objects, ~2.6 MB once a long-running session has used every id.
_PUBACKS: list[bytes | None] = [None] * 65536


def puback(mid: int) -> bytes:
    known = _PUBACKS[mid]
    if known is None:
        known = _PUBACKS[mid] = bytes((PUBACK, 2, mid >> 8, mid & 0xFF))
    return known


class Ticket:
    """The delivery handle of one received message (``contracts.Delivery``)."""

    __slots__ = ("_tracker", "mid", "qos", "settled")

    def __init__(self, tracker: AckTracker, mid: int, qos: int) -> None:
        self._tracker, self.mid, self.qos, self.settled = tracker, mid, qos, False

    def settle(self) -> None:
        if not self.settled:
            self.settled = True
            self._tracker.advance()


class AckTracker:
    __slots__ = ("_pending", "_wake", "acked", "closed", "outgoing")

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake  # told when PUBACKs start waiting in ``outgoing``: the session is to write them
        self._pending: deque[Ticket] = deque()
        self.outgoing = bytearray()
        self.acked = 0
        self.closed = False  # set when the connection is gone: its message ids mean nothing any more

    def track(self, mid: int, qos: int) -> Ticket:
        ticket = Ticket(self, mid, qos)
        self._pending.append(ticket)
        return ticket

    def advance(self) -> None:
        if self.closed:
            return
        pending, out = self._pending, self.outgoing
        was_empty = not out
        while pending and pending[0].settled:
            ticket = pending.popleft()
            if ticket.qos > 0:
                out += puback(ticket.mid)
                self.acked += 1
        if was_empty and out:
            self._wake()

    def take(self) -> bytes:
        """The PUBACKs due, in order, for the session's write; ``outgoing`` is empty after."""
        data = bytes(self.outgoing)
        self.outgoing.clear()
        return data

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Forget unsettled messages: the broker redelivers them on the next session (at-least-once).
        PUBACKs already due stay in ``outgoing``: they go out with the session's last write."""
        self.closed = True
        self._pending.clear()
