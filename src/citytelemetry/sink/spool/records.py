"""The spool's on-disk format.

A spool directory holds:

``seg-<first record id, 16 digits>.log``
    Segments, appended to in id order, one commit group per ``write`` + ``fsync``. A segment is a run of
    records: ``<id: u64> <length: u32> <crc32: u32> <appended_ms: i64>`` (little endian), then ``length``
    bytes of line protocol (lines joined by ``\\n``; a line-protocol line never contains a raw newline).
    Ids are consecutive across segments; a new segment starts when the active one reaches its size, or
    when every record in it is drained and it is retired to free the disk (``writer.py``).
``drained``
    The ledger (``ledger.py``): ``<drained id> <committed id> [<first>-<last> ...]`` in ASCII, padded
    with spaces to a multiple of 64 bytes. Records up
    to the drained id are in InfluxDB; records up to the committed id were acknowledged, so recovery
    knows what must be on disk; the ranges are ids already reported lost (skipped, not reported again).
    Written atomically (temporary file, fsync, rename) about once a second. A spool written before the
    committed id existed holds the drained id alone.
``.lock``
    ``flock``ed by the one process using the directory.

A torn or corrupt record (crash mid-write) is found by length and CRC and cut off at recovery, with
whatever follows it in its segment (``recovery.py``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from citytelemetry.sink.spool.fileops import FileOps

HEADER = struct.Struct("<QIIq")
SEGMENT_GLOB = "seg-*.log"


@dataclass(slots=True, frozen=True)
class Record:
    id: int
    appended_ms: int
    lines: list[bytes]


def encode(record_id: int, lines: Sequence[bytes], appended_ms: int) -> bytes:
    payload = b"\n".join(lines)
    return HEADER.pack(record_id, len(payload), zlib.crc32(payload), appended_ms) + payload


def encode_group(first_id: int, group: Sequence[tuple[Sequence[bytes], object]], appended_ms: int) -> bytes:
    """The records of one commit group (ids from ``first_id`` on), as ``encode`` writes each, joined; a
    one-line record is its line, without a join (W1: every record)."""
    parts: list[bytes] = []
    record_id = first_id
    crc32, pack = zlib.crc32, HEADER.pack
    for lines, _ in group:
        payload = lines[0] if len(lines) == 1 else b"\n".join(lines)
        parts.append(pack(record_id, len(payload), crc32(payload), appended_ms))
        parts.append(payload)
        record_id += 1
    return b"".join(parts)


def segment_path(directory: Path, first_id: int) -> Path:
    return directory / f"seg-{first_id:016d}.log"


def first_id_of(path: Path) -> int:
    return int(path.stem.removeprefix("seg-"))


def segments(ops: FileOps, directory: Path) -> list[Path]:
    return sorted(ops.list(directory, SEGMENT_GLOB), key=first_id_of)


def decode_payload(payload: bytes) -> list[bytes]:
    return payload.split(b"\n") if payload else []


def scan(data: bytes) -> Iterator[tuple[int, Record]]:
    """Yield (end offset, record) for each intact record; stop at the first torn or corrupt one."""
    offset = 0
    while offset + HEADER.size <= len(data):
        record_id, length, crc, appended_ms = HEADER.unpack_from(data, offset)
        start, end = offset + HEADER.size, offset + HEADER.size + length
        if end > len(data):
            return
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            return
        yield end, Record(record_id, appended_ms, decode_payload(payload))
        offset = end
