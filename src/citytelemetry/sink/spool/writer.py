"""Appends commit groups to the active segment and makes them durable (runs in a worker thread).

One ``append`` is one group commit: all of it written, then one ``fsync``; only then may its records
be acknowledged. A failed append is cut back off the segment, so the file never holds a partial group
that a later group would follow. A short write is continued, so a full disk surfaces as the ENOSPC it
is (``errors.SpoolWriteError``), not as a byte count.
"""

from __future__ import annotations

from pathlib import Path

from citytelemetry.sink.spool import records
from citytelemetry.sink.spool.errors import SpoolWriteError, write_error
from citytelemetry.sink.spool.fileops import AppendFile, FileOps


class SegmentWriter:
    def __init__(self, directory: Path, ops: FileOps, segment_bytes: int) -> None:
        self._directory = directory
        self._ops = ops
        self._segment_bytes = segment_bytes
        self._file: AppendFile | None = None
        self.active_first = 0  # first id of the segment being appended to (0: none open)
        self.active_size = 0
        self.fsyncs = 0

    def append(self, first_id: int, data: bytes) -> None:
        """Append one commit group (records from ``first_id`` on) and fsync it; raise ``SpoolWriteError``."""
        try:
            if self._file is None or self.active_size >= self._segment_bytes:
                self._rotate(first_id)
        except OSError as exc:
            raise write_error(exc, self._directory, len(data)) from exc
        assert self._file is not None  # set by _rotate
        try:
            self._write_all(self._file, data)
            self._file.sync()
        except OSError as exc:
            self._cut_back(self._file)
            raise write_error(exc, self._directory, len(data)) from exc
        self.active_size += len(data)
        self.fsyncs += 1

    @staticmethod
    def _write_all(file: AppendFile, data: bytes) -> None:
        offset = 0
        while offset < len(data):
            written = file.write(data[offset:] if offset else data)
            if written <= 0:
                raise OSError(None, f"short write: no progress with {len(data) - offset} bytes left")
            offset += written

    def _cut_back(self, file: AppendFile) -> None:
        try:
            file.truncate(self.active_size)
        except OSError:
            # The tail stays; recovery cuts it (records are checked by length and CRC). Reopen so the
            # next append starts from the file's real end, not from our idea of it.
            self.close()

    def _rotate(self, first_id: int) -> None:
        self.close()
        path = records.segment_path(self._directory, first_id)
        self._file = self._ops.open_append(path)
        self.active_first, self.active_size = first_id, self._file.size()
        self._ops.sync_dir(self._directory)  # the new file's directory entry must survive a crash too

    def retire(self) -> Path | None:
        """Close the active segment and return its path (every record in it is drained): the next append
        starts a new one, so the old file can be deleted even on a disk smaller than one segment."""
        if self._file is None:
            return None
        path = records.segment_path(self._directory, self.active_first)
        self.close()
        self.active_first = self.active_size = 0
        return path

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()


__all__ = ["SegmentWriter", "SpoolWriteError"]
