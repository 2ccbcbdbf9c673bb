"""Acknowledge QoS 1 messages only when settled, and in the order they were received.

MQTT 3.1.1 §4.6 and MQTT 5 §4.6 require PUBACKs in receive order, so a settled message waits for
every earlier one. The broker keeps at most "receive maximum" messages unacknowledged in flight to us:
that window is the pipeline's back-pressure, and it bounds memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

AckFunction = Callable[[int, int], None]  # (mid, qos)


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
    __slots__ = ("_ack", "_pending", "acked", "closed")

    def __init__(self, ack: AckFunction) -> None:
        self._ack = ack
        self._pending: deque[Ticket] = deque()
        self.acked = 0
        self.closed = False  # set when the connection is gone: its message ids mean nothing any more

    def track(self, mid: int, qos: int) -> Ticket:
        ticket = Ticket(self, mid, qos)
        self._pending.append(ticket)
        return ticket

    def advance(self) -> None:
        if self.closed:
            return
        pending = self._pending
        while pending and pending[0].settled:
            ticket = pending.popleft()
            if ticket.qos > 0:
                self._ack(ticket.mid, ticket.qos)
                self.acked += 1

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Forget unsettled messages: the broker redelivers them on the next session (at-least-once)."""
        self.closed = True
        self._pending.clear()
