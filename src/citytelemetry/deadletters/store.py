"""The dead-letter store: refused messages kept whole on disk, beside the spool, for ``deadletters replay``.

On disk, in one directory per running instance (``pipeline.deadletter_dir``): segments
``dl-<number>.jsonl``, appended in order, one JSON object per line:

    {"kind": "message", "received_ms": 1780000000123, "topic": "ct/v1/.../telemetry", "device": "tun-c001-gas1",
     "reason": "unknown_measurement", "reasons": {"unknown_measurement": 2}, "detail": "...",
     "payload": "<the payload, when it is UTF-8>"  |  "payload_b64": "<base64, when it is not>",
     "truncated": false}
    {"kind": "line", "received_ms": ..., "record": "deadletter", "line": "<a line InfluxDB refused>",
     "server": "<its answer>"}

An entry's id is ``<segment number>.<line number>`` (``3.17``), stable while its segment exists;
deadletters/entries.py reads them back.
Bounded by size (``max_bytes``: the oldest segments go first) and age (``max_age_s``: a segment whose last
write is older goes), checked when a segment is rotated and at open. A disk, not InfluxDB: the store
must not depend on the time-series store keeping strings (VictoriaMetrics keeps none), and a payload is
up to 64 KiB. Appends are flushed to the OS at once and fsync'd within a second (``SYNC_INTERVAL_S``),
on rotation and at close: the durable fate of a message is its ``ct_rejects`` point, this is the copy
to replay from. A failing disk is
counted (``write_failures``) and logged, never raised into the handler.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from citytelemetry.deadletters.summary import DeadLetter
from citytelemetry.observability.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
_PREFIX, _SUFFIX = "dl-", ".jsonl"
DEFAULT_MAX_BYTES = 256 * 1024**2
DEFAULT_MAX_AGE_S = 7 * 86_400.0  # the validator's default max_age_s: older readings could not land again
MAX_ENTRY_PAYLOAD = 1024**2  # a payload_too_large message can be what the broker allows; keep its head
SYNC_INTERVAL_S = 1.0  # an append is fsync'd at most this long after it (a flood costs one fsync a second)


class DeadLetterStoreError(Exception):
    """The store's directory cannot be used (at start: the pipeline does not run without it)."""


@dataclass(slots=True)
class StoreStats:
    entries_written: int = 0
    write_failures: int = 0
    segments_pruned: int = 0
    bytes_on_disk: int = 0


def segment_number(path: Path) -> int:
    return int(path.name.removeprefix(_PREFIX).removesuffix(_SUFFIX))


def segments(directory: Path) -> list[Path]:
    """The store's segments in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX)
             and p.name.removeprefix(_PREFIX).removesuffix(_SUFFIX).isdigit()]
    return sorted(found, key=segment_number)


class DeadLetterStore:
    def __init__(self, directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_age_s: float = DEFAULT_MAX_AGE_S,
                 segment_bytes: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.segment_bytes = segment_bytes or max(64 * 1024, min(8 * 1024**2, max_bytes // 8))
        self.stats = StoreStats()
        self._clock = clock
        self._file: IO[bytes] | None = None
        self._synced_at = 0.0
        self._number = 0
        self._size = 0
        self._failures = RateLimitedLog(log)

    def open(self) -> None:
        """Create the directory, drop what is over the bounds, and append to a new segment."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            existing = segments(self.directory)
            self._number = segment_number(existing[-1]) + 1 if existing else 1
            self._prune()
            self._start_segment()
        except OSError as exc:
            raise DeadLetterStoreError(f"dead-letter store {self.directory} (pipeline.deadletter_dir): "
                                       f"{exc.strerror or exc}") from exc

    def add_message(self, dead: DeadLetter, *, received_ms: int, payload: bytes) -> None:
        kept = payload[:MAX_ENTRY_PAYLOAD]
        entry: dict[str, Any] = {
            "kind": "message", "received_ms": received_ms, "topic": dead.topic, "device": dead.device_id,
            "reason": dead.reason.value, "reasons": {r.value: n for r, n in dead.counts}, "detail": dead.detail,
            "truncated": len(kept) < len(payload)}
        try:
            entry["payload"] = kept.decode("utf-8")
        except UnicodeDecodeError:
            entry["payload_b64"] = base64.b64encode(kept).decode()
        self._append(entry)

    def add_line(self, line: bytes, *, record: str, server_message: str, received_ms: int) -> None:
        self._append({"kind": "line", "received_ms": received_ms, "record": record,
                      "line": line.decode("utf-8", errors="replace"), "server": server_message[:1024]})

    def _append(self, entry: dict[str, Any]) -> None:
        data = orjson.dumps(entry) + b"\n"
        if not self._number:  # never opened (a pipeline that handles messages without running)
            self.stats.write_failures += 1
            self._failures.warning("closed", "dead-letter store %s is not open: entry not kept", self.directory)
            return
        try:
            if self._file is None:
                self._start_segment()
            elif self._size + len(data) > self.segment_bytes and self._size:
                self._rotate()
            assert self._file is not None
            self._file.write(data)
            self._file.flush()
            now = time.monotonic()
            if now - self._synced_at >= SYNC_INTERVAL_S:
                os.fsync(self._file.fileno())
                self._synced_at = now
        except OSError as exc:
            self.stats.write_failures += 1
            self._failures.warning("write", "dead-letter store %s: %s (the ct_rejects point is still written)",
                                   self.directory, exc.strerror or exc)
            self._close_file()
            return
        self._size += len(data)
        self.stats.bytes_on_disk += len(data)
        self.stats.entries_written += 1

    def _start_segment(self) -> None:
        path = self.directory / f"{_PREFIX}{self._number:06d}{_SUFFIX}"
        self._file = path.open("ab")
        self._size = self._file.tell()

    def _rotate(self) -> None:
        self._close_file()
        self._number += 1
        self._prune()
        self._start_segment()

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()
                self._file = None

    def _prune(self) -> None:
        """Oldest segments out while over ``max_bytes`` (counting the one about to start) or ``max_age_s``."""
        found = [(p, p.stat()) for p in segments(self.directory)]
        total = sum(st.st_size for _, st in found)
        oldest_kept = self._clock() - self.max_age_s
        for path, st in found:
            if total + self.segment_bytes <= self.max_bytes and st.st_mtime >= oldest_kept:
                break
            path.unlink(missing_ok=True)
            total -= st.st_size
            self.stats.segments_pruned += 1
        self.stats.bytes_on_disk = total

    def sync(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                self.stats.write_failures += 1
                self._failures.warning("sync", "dead-letter store %s: %s", self.directory, exc.strerror or exc)

    def close(self) -> None:
        try:
            self._close_file()
        except OSError as exc:
            self.stats.write_failures += 1
            log.warning("dead-letter store %s: %s", self.directory, exc.strerror or exc)
