"""Reading the dead-letter store back: its entries, oldest first, and the filters of ``deadletters list|replay``.

The format is documented in deadletters/store.py, which writes it.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from citytelemetry.deadletters.store import segment_number, segments

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class StoredEntry:
    id: str
    kind: str  # "message" or "line"
    received_ms: int
    topic: str = ""
    device: str | None = None
    reason: str = ""
    reasons: dict[str, int] = field(default_factory=dict)
    detail: str = ""
    payload: bytes = b""
    truncated: bool = False
    record: str = ""  # kind "line": which record it was (reading, deadletter, selfmetrics, ...)
    line: str = ""
    server: str = ""


def _entry(entry_id: str, raw: dict[str, Any]) -> StoredEntry:
    text = raw.get("payload_b64")
    payload = base64.b64decode(text) if text is not None else str(raw.get("payload", "")).encode()
    return StoredEntry(
        id=entry_id, kind=str(raw.get("kind", "message")), received_ms=int(raw["received_ms"]),
        topic=str(raw.get("topic", "")), device=raw.get("device"), reason=str(raw.get("reason", "")),
        reasons={str(k): int(v) for k, v in dict(raw.get("reasons", {})).items()}, detail=str(raw.get("detail", "")),
        payload=payload, truncated=bool(raw.get("truncated", False)), record=str(raw.get("record", "")),
        line=str(raw.get("line", "")), server=str(raw.get("server", "")))


def read_entries(directory: Path) -> Iterator[StoredEntry]:
    """Every readable entry, oldest first; a torn or garbled line (a crash mid-append) is skipped and logged."""
    for path in segments(directory):
        number = segment_number(path)
        with path.open("rb") as segment:
            for index, raw_line in enumerate(segment, start=1):
                try:
                    yield _entry(f"{number}.{index}", orjson.loads(raw_line))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    log.warning("%s line %d: not a dead-letter entry (torn write?); skipped", path, index)


@dataclass(slots=True, frozen=True)
class EntryFilter:
    """``deadletters list|replay --reason R --device D --since T``: every given condition must hold."""

    reason: str | None = None
    device: str | None = None
    since_ms: int | None = None
    kind: str | None = None

    def __call__(self, entry: StoredEntry) -> bool:
        return ((self.reason is None or self.reason in entry.reasons or self.reason == entry.reason)
                and (self.device is None or entry.device == self.device)
                and (self.since_ms is None or entry.received_ms >= self.since_ms)
                and (self.kind is None or entry.kind == self.kind))


def select(entries: Iterable[StoredEntry], keep: EntryFilter) -> list[StoredEntry]:
    return [entry for entry in entries if keep(entry)]
