"""Per-device state that survives a restart: sequence windows, completeness counters, rate-limit buckets.

Without it a restart forgets: completeness starts from zero (a kill -9 showed 7,270 received of 13,270),
and a replay of anything seen before the restart is accepted. Alert state has its own file
(``alerts.state_file``). Saved every ``pipeline.checkpoint_interval_s`` and once more at shutdown to
``pipeline.checkpoint_file`` (one per running instance, like the spool), restored at start.

What it holds is what has been *acknowledged*, not what has been validated: a reading accepted but not
yet durable is not acknowledged either, so after a crash the broker redelivers it and it must land
again. The handler keeps those readings (``MessageHandler.pending``) and the checkpoint leaves them out
of the windows (their bits cleared, their timestamps dropped from the ring). Completeness counts on
durable already.

Between two checkpoints, every reading that becomes durable is appended to a journal
(``<file>.journal``, one ``device seq ts`` line each) just before its PUBACK is written: the source
calls ``Journal.flush`` ahead of each socket write. A plain ``write`` with no fsync: a killed process
loses nothing the kernel has, so after a kill -9 the restored state is exact (the last checkpoint, then
the journal replayed); after a power loss it is the last checkpoint plus what of the journal reached the
disk. A checkpoint starts a new journal; older ones are deleted once it is saved.

Format (version 1): zlib-compressed JSON, written to ``<file>.tmp``, fsync'd, renamed over ``<file>``
and the directory fsync'd, so a crash leaves the old checkpoint or the new one, never a torn one::

    {"format": "citytelemetry-device-state", "version": 1, "saved_ms": <epoch ms>, "window": <W>,
     "restarts": <device restarts seen>, "journal": <number of the journal that follows it>,
     "sequences": {<device>: [top, <W-bit bitmap, base64 little-endian>, max_ts, start_ts,
                              <timestamp ring, base64 int64 little-endian>, next slot]},
     "completeness": {<device>: [low, top, received, max_ts, earlier_received, earlier_expected,
                                 duplicates, out_of_order]},
     "rate": {<device>: [tokens, last refill (device time, s)]}}

Bounded by the inventory: only devices of the catalog have state, each at most W/8 + 2 KiB + a few
numbers (about 4.5 MB raw for 1,800 devices at W = 4,096, much less compressed). Devices no longer in
the inventory are dropped at restore. An unreadable or foreign file is logged and ignored: the pipeline
starts with empty state, as it did before checkpoints.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import time
import zlib
from array import array
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, Protocol

import orjson

from citytelemetry.atomicfile import replace_file
from citytelemetry.observability.completeness import CompletenessTracker, DeviceCounts
from citytelemetry.run.journal import Journal
from citytelemetry.validate.ratelimit import DeviceRateLimit
from citytelemetry.validate.sequence import TIMESTAMP_MEMORY, DeviceWindow, SequenceTracker

log = logging.getLogger(__name__)
FORMAT, VERSION = "citytelemetry-device-state", 1
NO_TIMESTAMP = -(2**63)
Pending = Iterable[tuple[str, int, int]]  # (device, seq, timestamp) accepted, not yet acknowledged


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _window(state: DeviceWindow, window: int, pending: list[tuple[int, int]]) -> list[object]:
    bits, ring = state.bits, array("q", state.timestamps)
    for seq, timestamp_ms in pending:  # not acknowledged: after a crash it comes again and must land
        if 0 <= state.top - seq < window:
            bits &= ~(1 << (state.top - seq))
        if timestamp_ms in ring:
            ring[ring.index(timestamp_ms)] = NO_TIMESTAMP
    if sys.byteorder == "big":
        ring.byteswap()
    return [state.top, _b64(bits.to_bytes((window + 7) // 8, "little")), state.max_ts, state.start_ts,
            _b64(ring.tobytes()), state.next_ts]


def snapshot(sequences: SequenceTracker, completeness: CompletenessTracker, rate: DeviceRateLimit | None,
             pending: Pending) -> dict[str, Any]:
    """The state as a document; ``pending`` readings are left out of the windows."""
    by_device: dict[str, list[tuple[int, int]]] = {}
    for device_id, seq, timestamp_ms in pending:
        by_device.setdefault(device_id, []).append((seq, timestamp_ms))
    window = sequences.window
    return {
        "format": FORMAT, "version": VERSION, "saved_ms": time.time_ns() // 1_000_000, "window": window,
        "restarts": sequences.restarts,
        "sequences": {device_id: _window(state, window, by_device.get(device_id, []))
                      for device_id, state in sequences.devices().items()},
        "completeness": {device_id: [c.low, c.top, c.received, c.max_ts, c.earlier_received, c.earlier_expected,
                                     c.duplicates, c.out_of_order]
                         for device_id, c in completeness.devices().items()},
        "rate": {} if rate is None else {device_id: list(bucket) for device_id, bucket in rate.buckets().items()},
    }


def encode(document: dict[str, Any]) -> bytes:
    return zlib.compress(orjson.dumps(document), 1)


def write(path: Path, data: bytes) -> None:
    """Crash-safe replace: the old file or the new one survives, never a torn one."""
    replace_file(path, data)


def read(path: Path) -> dict[str, Any] | None:
    """The document, or None (logged) if there is none or it cannot be used."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("device state %s unreadable (%s); starting with empty state", path, exc)  # noqa: TRY400
        return None
    try:
        document = orjson.loads(zlib.decompress(data))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        log.error("device state %s is damaged (%s); starting with empty state", path, exc)  # noqa: TRY400
        return None
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != VERSION:
        log.error("device state %s is not a version %d checkpoint; starting with empty state", path, VERSION)
        return None
    return document


def restore(document: dict[str, Any], known: Collection[str], sequences: SequenceTracker,
            completeness: CompletenessTracker, rate: DeviceRateLimit | None) -> int:
    """Load a document into empty trackers; returns the devices restored. Unknown devices are dropped."""
    mask = (1 << sequences.window) - 1
    windows = sequences.devices()
    for device_id, (top, bits, max_ts, start_ts, ring, next_ts) in document["sequences"].items():
        if device_id not in known:
            continue
        state = DeviceWindow(top, max_ts)
        state.bits = int.from_bytes(base64.b64decode(bits), "little") & mask
        state.start_ts = start_ts
        timestamps = array("q")
        timestamps.frombytes(base64.b64decode(ring))
        if sys.byteorder == "big":
            timestamps.byteswap()
        if len(timestamps) == TIMESTAMP_MEMORY:
            state.timestamps, state.next_ts = timestamps, next_ts
        windows[device_id] = state
    sequences.restarts = document["restarts"]
    counts = completeness.devices()
    for device_id, fields in document["completeness"].items():
        if device_id in known:
            c = DeviceCounts(fields[1], fields[3])
            (c.low, c.top, c.received, c.max_ts, c.earlier_received, c.earlier_expected, c.duplicates,
             c.out_of_order) = fields
            counts[device_id] = c
    if rate is not None:
        buckets = rate.buckets()
        for device_id, (tokens, last) in document["rate"].items():
            if device_id in known:
                buckets[device_id] = [float(tokens), float(last)]
    return len(windows)


class PendingReadings(Protocol):
    """A message's readings accepted and not yet durable (``run.handler.Landing``)."""

    def readings(self) -> list[tuple[str, int, int]]: ...


class Checkpointer:
    """Restores the device state at start, saves it every ``interval_s`` and once more at shutdown."""

    def __init__(self, path: Path, interval_s: float, *, known: Collection[str], sequences: SequenceTracker,
                 completeness: CompletenessTracker, rate: DeviceRateLimit | None,
                 pending: Collection[PendingReadings]) -> None:
        self.path, self._interval_s, self._known = path, interval_s, known
        self._sequences, self._completeness, self._rate, self._pending = sequences, completeness, rate, pending
        self.journal = Journal(path)
        self.saves = 0

    def restore(self) -> None:
        """At start, before anything is consumed: the checkpoint, then the journals after it."""
        document = read(self.path)
        number = 0
        if document is not None:
            devices = restore(document, self._known, self._sequences, self._completeness, self._rate)
            number = int(document.get("journal", 0))
            log.info("device state restored from %s: %d devices (saved at %d ms)", self.path, devices,
                     document["saved_ms"])
        replayed = 0
        for device_id, seq, timestamp_ms in self.journal.replay(number):
            if device_id in self._known:
                if self._sequences.check(device_id, seq, timestamp_ms) is None:
                    self._sequences.accept(device_id, seq, timestamp_ms)
                self._completeness.landed(device_id, seq, timestamp_ms)
                replayed += 1
        if replayed:
            log.info("device state: %d readings replayed from the journal after the checkpoint", replayed)
        highest = max([number - 1, *self._journal_numbers()])
        self.journal.open(highest + 1)

    def _journal_numbers(self) -> list[int]:
        suffixes = (p.name.rsplit(".", 1)[-1] for p in self.path.parent.glob(f"{self.path.name}.journal.*"))
        return [int(s) for s in suffixes if s.isdigit()]

    def encode(self) -> bytes:
        pending = [reading for landing in self._pending for reading in landing.readings()]
        document = snapshot(self._sequences, self._completeness, self._rate, pending)
        document["journal"] = self.journal.number
        return encode(document)

    async def save(self) -> None:
        self.journal.open(self.journal.number + 1)  # what lands from now on goes into the next journal
        data = self.encode()  # on the loop: the trackers change only there
        data_number = self.journal.number
        await asyncio.to_thread(write, self.path, data)
        self.journal.drop_before(data_number)
        self.saves += 1

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.save()
            except OSError as exc:  # a full disk must not stop ingestion: the next save tries again
                log.error("cannot save device state to %s: %s", self.path, exc)  # noqa: TRY400

    def close(self) -> None:
        self.journal.close()
