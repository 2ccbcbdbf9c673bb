"""Reads committed records back from the segments, in id order (worker thread: blocking I/O).

Only ids below the spool's committed id are asked for, so a record asked for is whole on disk (the
spool skips the id ranges recovery found lost: ``recovery.py``).
"""

from __future__ import annotations

import zlib
from pathlib import Path

from citytelemetry.sink.spool import records
from citytelemetry.sink.spool.errors import CorruptSpoolError
from citytelemetry.sink.spool.fileops import FileOps, ReadFile
from citytelemetry.sink.spool.records import HEADER, Record


class SegmentReader:
    """Sequential reads across segments, on demand (the active segment may still be growing)."""

    def __init__(self, directory: Path, ops: FileOps) -> None:
        self._directory = directory
        self._ops = ops
        self._file: ReadFile | None = None
        self._path: Path | None = None
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
                raise CorruptSpoolError(f"record {found_id} in {self._path} is damaged")
            if found_id == record_id:
                return Record(found_id, appended_ms, records.decode_payload(payload))
            if found_id > record_id:
                raise CorruptSpoolError(f"record {record_id} missing: found {found_id} in {self._path}")

    def _open(self, record_id: int) -> None:
        holding = [p for p in records.segments(self._ops, self._directory) if records.first_id_of(p) <= record_id]
        if not holding:
            raise CorruptSpoolError(f"no segment holds record {record_id}")
        self._switch(holding[-1])

    def _advance(self, record_id: int) -> None:
        later = [p for p in records.segments(self._ops, self._directory) if records.first_id_of(p) > self._first_id]
        if not later or records.first_id_of(later[0]) > record_id:
            raise CorruptSpoolError(f"record {record_id} is not on disk")
        self._switch(later[0])

    def _switch(self, path: Path) -> None:
        self.close()
        self._first_id = records.first_id_of(path)
        self._path = path
        self._file = self._ops.open_read(path)

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()
