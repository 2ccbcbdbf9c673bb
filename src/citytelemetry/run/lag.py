"""The consumer's own lag: is the pipeline behind the broker right now?

Time-based alert rules (staleness, coverage, completeness) ask this before each evaluation
(``AlertEvaluator.follow``): a device is not silent because we have not read its messages yet.

Behind means one of:
- disconnected: whatever the devices send meanwhile waits at the broker;
- the receive window is full (``in_flight >= receive_maximum``): the broker sends no more until we
  acknowledge, so it may be holding more for us. Below the window it sends what it has at once, so
  a window with room means the broker has nothing older queued for us;
- received messages not handled yet (in the source's queue, not yet validated): the readings they
  carry are not in the event time.
"""

from __future__ import annotations

from citytelemetry.run.handler import MessageHandler


class ConsumerLag:
    __slots__ = ("_handler", "_window")

    def __init__(self, handler: MessageHandler, receive_maximum: int) -> None:
        self._handler = handler  # its ``source`` is the connected source, None between connections
        self._window = receive_maximum

    def __call__(self) -> bool:
        source = self._handler.source
        if source is None:
            return True
        in_flight = source.in_flight
        if in_flight >= self._window:
            return True
        stats = self._handler.stats
        handled_unsettled = stats.messages_received - stats.messages_settled  # handled, waiting to be durable
        return in_flight > handled_unsettled
