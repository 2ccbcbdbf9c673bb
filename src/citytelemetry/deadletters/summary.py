"""All refusals of one message summed up into one dead letter.

A message can be refused field by field: 5,000 unknown keys are 5,000 rejections for the counters, but
one record and one notice here, so what a device can make us write grows with its messages, not with
its keys. What is kept is bounded whatever the message holds: the count per reason, the first few
details and field names, the first sequence number and the 256-character excerpt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from citytelemetry.records import Reason, Rejection

MAX_DETAILS = 5  # details quoted from the first refusals; the rest is "... and N more"
MAX_DETAIL_CHARS = 512
MAX_FIELD_NAMES = 8
MAX_FIELDS_CHARS = 256


@dataclass(slots=True, frozen=True)
class DeadLetter:
    """One refused message (or the refused parts of one), as a ``ct_rejects`` point and a notice tell it."""

    reason: Reason  # the most frequent reason (ties: the first refused); the point's tag
    counts: tuple[tuple[Reason, int], ...]  # refusals by reason, most frequent first
    topic: str
    excerpt: str
    detail: str  # the first MAX_DETAILS details, bounded
    device_id: str | None  # only for devices of the inventory
    field_names: tuple[str, ...]  # the first MAX_FIELD_NAMES refused measurement keys
    seq: int | None  # the first refused reading's seq, as sent (it may not fit in 64 bits)

    @property
    def total(self) -> int:
        return sum(count for _, count in self.counts)

    @property
    def reasons_text(self) -> str:
        """``unknown_measurement=5000,out_of_range=1``."""
        return ",".join(f"{reason.value}={count}" for reason, count in self.counts)


def summarize(rejections: Sequence[Rejection]) -> DeadLetter:
    """``rejections`` of one message (at least one; they share its topic and excerpt)."""
    first = rejections[0]
    counts = Counter(rejection.reason for rejection in rejections).most_common()  # stable for ties
    details = [rejection.detail for rejection in rejections[:MAX_DETAILS]]
    if len(rejections) > MAX_DETAILS:
        details.append(f"... and {len(rejections) - MAX_DETAILS} more")
    names: list[str] = []
    for rejection in rejections:
        if rejection.measurement is not None and rejection.measurement not in names:
            names.append(rejection.measurement)
            if len(names) == MAX_FIELD_NAMES:
                break
    seq = next((rejection.seq for rejection in rejections if rejection.seq is not None), None)
    return DeadLetter(reason=counts[0][0], counts=tuple(counts), topic=first.topic, excerpt=first.excerpt,
                      detail="; ".join(details)[:MAX_DETAIL_CHARS], device_id=first.device_id,
                      field_names=tuple(names), seq=seq)
