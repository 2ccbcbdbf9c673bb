"""On-disk record format of the spool, and a sequential reader over its segment files.

A segment is a file ``seg-<first record id>.log`` of records:
``<id: u64> <length: u32> <crc32: u32> <appended_ms: i64>`` then ``length`` bytes of line protocol
(lines joined by ``\\n``; a line-protocol line never contains a raw newline). A torn or corrupt tail
(crash mid-write) is detected by length and CRC and cut off at recovery.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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


def segment_path(directory: Path, first_id: int) -> Path:
    return directory / f"seg-{first_id:016d}.log"


def first_id_of(path: Path) -> int:
    return int(path.stem.removeprefix("seg-"))


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(SEGMENT_GLOB), key=first_id_of)


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
        yield end, Record(record_id, appended_ms, payload.split(b"\n") if payload else [])
        offset = end


class SegmentReader:
    """Reads records in id order across segments, on demand (segments may still be growing).

    Only ids below the spool's committed id are asked for, so a record asked for is whole on disk.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._file: BinaryIO | None = None
        self._first_id = -1

    def read(self, record_id: int) -> Record:
        if self._file is None:
            self._open(record_id)
        while True:
            assert self._file is not None  # opened above or by _advance
            header = self._file.read(HEADER.size)
            if len(header) < HEADER.size:
                self._advance(record_id)
                continue
            found_id, length, crc, appended_ms = HEADER.unpack(header)
            payload = self._file.read(length)
            if len(payload) != length or zlib.crc32(payload) != crc:
                raise CorruptSpoolError(f"record {found_id} in {self._file.name} is damaged")
            if found_id == record_id:
                return Record(found_id, appended_ms, payload.split(b"\n") if payload else [])
            if found_id > record_id:
                raise CorruptSpoolError(f"record {record_id} missing: found {found_id} in {self._file.name}")

    def _open(self, record_id: int) -> None:
        holding = [p for p in segments(self._directory) if first_id_of(p) <= record_id]
        if not holding:
            raise CorruptSpoolError(f"no segment holds record {record_id}")
        self._first_id = first_id_of(holding[-1])
        self._file = holding[-1].open("rb")

    def _advance(self, record_id: int) -> None:
        later = [p for p in segments(self._directory) if first_id_of(p) > self._first_id]
        if not later or first_id_of(later[0]) > record_id:
            raise CorruptSpoolError(f"record {record_id} is not on disk")
        self.close()
        self._first_id = first_id_of(later[0])
        self._file = later[0].open("rb")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class CorruptSpoolError(Exception):
    """The spool on disk does not hold what its bookkeeping says: never silently skip data."""
