"""Replay stored dead letters through the current profiles: what passes now lands, the rest is reported.

Idempotent by construction: a reading's point key is (device type, inventory tags, ``ts``), so landing
a replayed reading twice leaves one point, and the readings of a partly refused message that landed the
first time are rewritten with the same values. Sequence state starts fresh (the pipeline's is not
visible from here); entries are replayed oldest first, so one device's readings keep their order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from citytelemetry.contracts import LineWriter
from citytelemetry.deadletters.entries import StoredEntry
from citytelemetry.deadletters.summary import DeadLetter, summarize
from citytelemetry.validate.offline import check, offline_message
from citytelemetry.validate.validator import MessageValidator

WRITE_BATCH = 5000


@dataclass(slots=True)
class ReplayReport:
    replayed: int = 0  # message entries re-validated
    passed: int = 0  # of them, refused by nothing now
    lines: list[bytes] = field(default_factory=list)  # reading points to land
    still_refused: list[tuple[StoredEntry, DeadLetter]] = field(default_factory=list)
    skipped: list[tuple[StoredEntry, str]] = field(default_factory=list)  # not replayable, and why


def revalidate(entries: Iterable[StoredEntry], validator: MessageValidator) -> ReplayReport:
    report = ReplayReport()
    for entry in entries:
        if entry.kind != "message":
            report.skipped.append((entry, f"a {entry.record or 'record'} line InfluxDB refused, not a message"))
            continue
        if entry.truncated:
            report.skipped.append((entry, f"payload kept truncated ({len(entry.payload)} bytes)"))
            continue
        report.replayed += 1
        checked = check(validator, offline_message(entry.topic, entry.payload, entry.received_ms))
        report.lines.extend(checked.lines)
        if checked.rejections:
            report.still_refused.append((entry, summarize(checked.rejections)))
        else:
            report.passed += 1
    return report


async def land(lines: Sequence[bytes], writer: LineWriter) -> int:
    """Write ``lines`` in batches; raises ``WriteError`` (nothing is retried here: run replay again)."""
    for start in range(0, len(lines), WRITE_BATCH):
        await writer.write(lines[start:start + WRITE_BATCH])
    return len(lines)
