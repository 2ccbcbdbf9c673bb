"""Recovery at start: scan the segments, cut torn tails, and prove nothing acknowledged is missing.

Every record up to the ledger's committed id was acknowledged, and every record below the newest one on
disk was written before it, so each id in (drained id, max(committed id, newest id on disk)] must be on
disk. Whatever is not was acknowledged and is lost (a disk fault, a file cut or deleted by hand): that is
reported as such, with the devices and sequence numbers the surviving neighbours bound, and counted,
never just logged as a torn tail. A torn tail beyond the committed id is a write that was in flight at
a crash, never acknowledged: cut silently but for one line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from citytelemetry.sink.spool import records
from citytelemetry.sink.spool.fileops import FileOps
from citytelemetry.sink.spool.ledger import IdRange, Marks

log = logging.getLogger(__name__)

@dataclass(slots=True, frozen=True)
class SeqRange:
    """Sequence numbers of one device that may be among the lost records: ``first`` to ``last``
    inclusive; ``last`` is None when no later reading of the device survived to bound it."""

    device: str
    first: int
    last: int | None


@dataclass(slots=True, frozen=True)
class SpoolLoss:
    """Acknowledged records that recovery found missing from the spool (never written to InfluxDB)."""

    records: int
    ids: tuple[IdRange, ...]
    seqs: tuple[SeqRange, ...]

    def describe(self) -> str:
        ids = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in self.ids)
        seqs = ", ".join(f"{s.device} seq {s.first}-{'' if s.last is None else s.last}" for s in self.seqs[:20])
        more = f" and {len(self.seqs) - 20} more devices" if len(self.seqs) > 20 else ""
        return (f"{self.records} acknowledged records lost from the spool (ids {ids}); they never reached "
                f"InfluxDB; readings possibly lost: {seqs or 'devices unknown'}{more}")


@dataclass(slots=True)
class Recovered:
    next_id: int
    bytes_on_disk: int
    last_on_disk: int = 0  # the newest record on disk (or the drained id if none is undrained)
    gaps: tuple[IdRange, ...] = ()  # every missing id range below next_id: the reader skips them
    loss: SpoolLoss | None = None  # what of ``gaps`` (and a lost tail) is newly found this start
    torn_bytes: dict[str, int] = field(default_factory=dict)  # segment name -> bytes cut


def recover(directory: Path, ops: FileOps, marks: Marks) -> Recovered:
    ids: list[int] = []
    result = Recovered(next_id=0, bytes_on_disk=0)
    for path in records.segments(ops, directory):
        data = ops.read_bytes(path)
        good_end = 0
        for end, record in records.scan(data):
            good_end = end
            if record.id > marks.drained:
                ids.append(record.id)
        if good_end < len(data):
            ops.truncate(path, good_end)
            result.torn_bytes[path.name] = len(data) - good_end
        result.bytes_on_disk += good_end
    last_on_disk = ids[-1] if ids else marks.drained
    result.last_on_disk = last_on_disk
    # Lost ids are never used again: the ledger keeps them as known gaps until drained past, so a
    # second start neither reports them twice nor takes a new record for an old lost one.
    result.next_id = max(last_on_disk, marks.committed) + 1
    gaps = list(_gaps(ids, marks.drained))
    if marks.committed > last_on_disk:
        gaps.append((last_on_disk + 1, marks.committed))  # the newest acknowledged records are gone
    result.gaps = tuple(gaps)
    new = _minus(gaps, marks.gaps)
    if new:
        result.loss = SpoolLoss(records=sum(b - a + 1 for a, b in new), ids=tuple(new),
                                seqs=tuple(_bounding_seqs(directory, ops, new)))
    for name, size in result.torn_bytes.items():
        log.warning("spool: cut a torn tail of %d bytes off %s (%s)", size, name,
                    "acknowledged records were in it: see the loss below" if result.loss
                    else "a write in flight at a crash, never acknowledged")
    return result


def _minus(ranges: list[IdRange], known: tuple[IdRange, ...]) -> list[IdRange]:
    """The ids of ``ranges`` not in ``known`` (reported at an earlier start), as ranges."""
    for low, high in known:
        kept: list[IdRange] = []
        for first, last in ranges:
            if last < low or first > high:
                kept.append((first, last))
                continue
            if first < low:
                kept.append((first, low - 1))
            if last > high:
                kept.append((high + 1, last))
        ranges = kept
    return ranges


def _gaps(ids: list[int], drained: int) -> Iterator[IdRange]:
    previous = drained
    for record_id in ids:
        if record_id > previous + 1:
            yield previous + 1, record_id - 1
        previous = max(previous, record_id)


def _bounding_seqs(directory: Path, ops: FileOps, lost: list[IdRange]) -> Iterator[SeqRange]:
    """For each lost range: per device, the last sequence number before it and the first after it."""
    for (before, after) in _neighbours(directory, ops, lost):
        for device in sorted(before):
            low, high = before[device], after.get(device)
            if high is None:
                yield SeqRange(device, low + 1, None)
            elif high > low + 1:
                yield SeqRange(device, low + 1, high - 1)
        # A device first seen after the loss: nothing says it lost anything.


def _neighbours(directory: Path, ops: FileOps, lost: list[IdRange]) -> list[tuple[dict[str, int], dict[str, int]]]:
    sides: list[tuple[dict[str, int], dict[str, int]]] = [({}, {}) for _ in lost]
    for path in records.segments(ops, directory):
        for _, record in records.scan(ops.read_bytes(path)):
            for (first, last), (before, after) in zip(lost, sides, strict=True):
                if record.id < first:
                    before.update(_device_seqs(record.lines))  # the latest before the loss wins
                elif record.id > last:
                    for device, seq in _device_seqs(record.lines):
                        after.setdefault(device, seq)  # the earliest after it
    return sides


def _device_seqs(lines: list[bytes]) -> Iterator[tuple[str, int]]:
    """(device tag, seq field) of each reading line (``line_protocol.reading_line``); others skipped."""
    for line in lines:
        start = line.find(b",device=")
        body, _, _ = line.rpartition(b" ")
        seq_at = body.rfind(b",seq=")
        if start < 0 or seq_at < 0 or not body.endswith(b"i"):
            continue
        start += len(b",device=")
        end = min((i for i in (line.find(b",", start), line.find(b" ", start)) if i >= 0), default=-1)
        try:
            yield line[start:end].decode(), int(body[seq_at + len(b",seq="):-1])
        except ValueError:
            continue
