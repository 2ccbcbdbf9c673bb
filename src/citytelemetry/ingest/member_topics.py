"""A partitioned member's topic filters, kept in step with the inventory across reloads and reconnects.

``partition.subscription`` gives a member's topics for one inventory, and a connection subscribes to
them at connect. A reload computes them again for the new inventory (``prepare``, off the event loop);
``use`` makes the new set the one every later (re)connect subscribes to, and ``follow`` brings the open
connection to it: SUBSCRIBE (QoS 1, batched as at connect) the topics it gained, then UNSUBSCRIBE those
it lost, as at connect, so nothing falls between the two. Diffing topic sets rather than device lists
also covers a device whose site or system changed (its topics did) and a device whose owner moved.

A topic the broker refuses (SUBACK failure code: an ACL that does not have the new device yet) is
reported in words and left out of the set, so a reconnect does not fail on it; the next reload asks
again. A topic dropped stays on a resumed session's unsubscribe list for the rest of the process: if
the live UNSUBSCRIBE never reached the broker, the session still holds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from citytelemetry.ingest.broker import BrokerError, BrokerSource
from citytelemetry.ingest.partition import PARTITION_BY, Subscription, subscription
from citytelemetry.profiles import RegisteredDevice

REQUEST_TIMEOUT_S = 10.0  # for each SUBACK / UNSUBACK on a live connection


@dataclass(frozen=True, slots=True)
class TopicChange:
    subscribe: tuple[str, ...]
    unsubscribe: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.subscribe and not self.unsubscribe


def topic_change(held: Iterable[str], wanted: Sequence[str]) -> TopicChange:
    """What takes a connection holding ``held`` to ``wanted``: new topics in ``wanted``'s order."""
    held_set, wanted_set = set(held), set(wanted)
    return TopicChange(tuple(f for f in wanted if f not in held_set),
                       tuple(sorted(held_set - wanted_set)))


@dataclass(frozen=True, slots=True)
class TopicsOutcome:
    """What ``follow`` did on the open connection, for the reload report and the log."""

    subscribed: tuple[str, ...] = ()
    unsubscribed: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()  # (topic filter, the broker's reason code)
    connected: bool = True  # False: no connection now; the next one subscribes to the new set
    error: str | None = None  # the connection failed meanwhile

    def lines(self) -> list[str]:
        if not self.connected:
            return ["subscriptions: not connected now; the next connection subscribes to the new set"]
        done = [f"{label} {len(topics)} topic{'' if len(topics) == 1 else 's'}" for label, topics in
                (("subscribed", self.subscribed), ("unsubscribed", self.unsubscribed), ("refused", self.refused))
                if topics]
        out = [f"subscriptions: {', '.join(done) or 'unchanged'}"]
        out += [f"warning: the broker refused the subscription to {topic} ({code}): its messages reach no member; "
                "allow it (ACL) and reload" for topic, code in self.refused]
        if self.error is not None:
            out.append(f"warning: subscriptions not brought up to date on this connection ({self.error}); "
                       "the next connection subscribes to the new set")
        return out

    def as_json(self) -> dict[str, object]:
        return {"subscribed": list(self.subscribed), "unsubscribed": list(self.unsubscribed),
                "refused": [{"topic": t, "reason": c} for t, c in self.refused], "connected": self.connected,
                "error": self.error}


class MemberTopics:
    """The topics member ``spec`` ("k/n") subscribes to, and what its open connection holds."""

    def __init__(self, spec: str, prefix: str, devices: Iterable[RegisteredDevice], *,
                 partition_by: Iterable[str] = PARTITION_BY, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._spec, self._prefix, self._timeout_s = spec, prefix, timeout_s
        self._partition_by = tuple(partition_by)  # the affinity keys (pipeline.partition_by)
        start = subscription(spec, devices, prefix, self._partition_by)
        self._filters, self._foreign = start.filters, start.unsubscribe
        self._dropped: list[str] = []  # lost at reloads since the start
        self._source: BrokerSource | None = None
        self._held: set[str] = set()  # what the open connection is subscribed to
        self._lock = asyncio.Lock()  # one follow at a time: each starts from what the last left

    @property
    def filters(self) -> list[str]:
        """What the next connection subscribes to."""
        return list(self._filters)

    @property
    def unsubscribe(self) -> list[str]:
        """What the next connection drops if its session is resumed."""
        return self._foreign + self._dropped

    def prepare(self, devices: Iterable[RegisteredDevice]) -> Subscription:
        """The member's topics for a new inventory; pure (a reload calls it in its worker thread)."""
        return subscription(self._spec, devices, self._prefix, self._partition_by)

    def use(self, new: Subscription) -> None:
        """From now on, ``new`` is the set: for the next connection at once, for the open one at ``follow``."""
        wanted = set(new.filters)
        lost = [f for f in self._filters if f not in wanted]
        self._dropped = [f for f in dict.fromkeys(self._dropped + lost) if f not in wanted]
        self._filters, self._foreign = list(new.filters), list(new.unsubscribe)

    def attach(self, source: BrokerSource, subscribed: Iterable[str]) -> None:
        """``source`` connected, subscribed to ``subscribed``; a ``use`` since it was opened is still to follow."""
        self._source, self._held = source, set(subscribed)

    def refused_at_connect(self, topics: Iterable[str]) -> None:
        """The broker refused these at connect: out of the set, as at a reload (the next reload asks again)."""
        refused = set(topics)
        self._filters = [f for f in self._filters if f not in refused]
        self._held -= refused

    def detach(self) -> None:
        self._source, self._held = None, set()

    @property
    def behind(self) -> bool:
        """The open connection holds another set than the current one."""
        return self._source is not None and self._held != set(self._filters)

    async def follow(self) -> TopicsOutcome:
        """Bring the open connection's subscriptions to the current set."""
        async with self._lock:
            source = self._source
            if source is None:
                return TopicsOutcome(connected=False)
            change = topic_change(self._held, self._filters)
            subscribed: tuple[str, ...] = ()
            refused: list[tuple[str, str]] = []
            try:
                if change.subscribe:
                    refused = await source.subscribe(list(change.subscribe), timeout_s=self._timeout_s)
                    subscribed = self._subscribed(change.subscribe, {topic for topic, _ in refused})
                not_dropped = await source.unsubscribe(list(change.unsubscribe), timeout_s=self._timeout_s) \
                    if change.unsubscribe else []
            except BrokerError as exc:
                return TopicsOutcome(subscribed, (), tuple(refused), error=str(exc))
            kept = {topic for topic, _ in not_dropped}
            self._held -= set(change.unsubscribe) - kept
            refused += not_dropped
            return TopicsOutcome(subscribed, tuple(t for t in change.unsubscribe if t not in kept), tuple(refused))

    def _subscribed(self, asked: tuple[str, ...], refused: set[str]) -> tuple[str, ...]:
        """Hold what the broker granted; a refused topic leaves the set, or every reconnect would fail on it."""
        granted = tuple(t for t in asked if t not in refused)
        self._held |= set(granted)
        if refused:
            self._filters = [f for f in self._filters if f not in refused]
        return granted
