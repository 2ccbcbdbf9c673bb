"""Where a refused message goes: at most one ``ct_rejects`` line, one notice and one stored copy.

The handler counts every refusal (by reason, on /metrics), sums them up (``summarize``) and hands the
summary here, once per message. This is the amplification bound: what a device makes us write grows
with its refused messages (one record each, however many keys they refuse), capped per device by the budget;
what is over it is suppressed, counted (``suppressed`` by reason) and told in the device's next record.

Every refusal also costs its device one token of its reading rate budget (``charge``; ``rate_limited``
ones excepted, or a device would dig itself deeper): junk refused before its readings are counted
(``not_json``, ``bad_schema``) is not free, and a message of 5,000 unknown keys empties the budget at
once (down to a debt of ``-burst``), so the device's next messages are refused as ``rate_limited`` at
the rate check, before their fields are looked at. That bounds the CPU a device can take from the
others: measured, one such message costs 80-160 ms of validation (pure Python), a rate-limited one ~1 ms.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from citytelemetry.contracts import InboundMessage
from citytelemetry.deadletters.budget import DeadLetterBudget
from citytelemetry.deadletters.store import DeadLetterStore
from citytelemetry.deadletters.summary import DeadLetter
from citytelemetry.records import Reason
from citytelemetry.sink.deadletter import DeadLetterFormatter

PublishNotice = Callable[[str, bytes], None]  # (reason code, notice) to the live MQTT feed
Charge = Callable[[str, float], None]  # DeviceRateLimit.charge


class DeadLetterOutlet:
    __slots__ = ("_budget", "_charge", "_formatter", "_publish", "_store", "suppressed")

    def __init__(self, formatter: DeadLetterFormatter, budget: DeadLetterBudget, *,
                 store: DeadLetterStore | None = None, publish_notice: PublishNotice | None = None,
                 charge: Charge | None = None, suppressed: Counter[str] | None = None) -> None:
        self._formatter = formatter
        self._budget = budget
        self._store = store
        self._publish = publish_notice
        self._charge = charge
        # refused messages without a record, by reason (PipelineStats.deadletters_suppressed)
        self.suppressed: Counter[str] = Counter() if suppressed is None else suppressed

    @property
    def formatter(self) -> DeadLetterFormatter:
        return self._formatter

    def use_formatter(self, formatter: DeadLetterFormatter) -> None:
        """A reload: the new catalog's inventory tags from the next dead letter on; budgets are kept."""
        self._formatter = formatter

    def __call__(self, message: InboundMessage, dead: DeadLetter) -> bytes | None:
        """The message's ``ct_rejects`` line, or None when its device is over its dead-letter budget."""
        if self._charge is not None and dead.device_id is not None:
            cost = dead.total - sum(n for reason, n in dead.counts if reason is Reason.RATE_LIMITED)
            if cost:
                self._charge(dead.device_id, float(cost))
        if not self._budget.admit(dead.device_id):
            self.suppressed[dead.reason.value] += 1
            return None
        suppressed = self._budget.take_suppressed(dead.device_id)
        if self._store is not None:
            self._store.add_message(dead, received_ms=message.received_ms, payload=message.payload)
        if self._publish is not None:
            self._publish(dead.reason.value, self._formatter.notice(dead, message.received_ms, suppressed=suppressed))
        return self._formatter.line(dead, message.received_ms, suppressed=suppressed)
