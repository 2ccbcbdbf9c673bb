"""An in-memory filesystem for the spool (``sink.spool.FileOps``) with faults as inputs.

Each file keeps what a reader sees (the page cache) apart from what survives a crash (what was synced),
so ``crash()`` can do what a power cut does: drop every byte never synced, and every file whose
directory entry was never synced. Faults are queued per operation (``inject``) or come from a small
disk (``capacity``: a write that does not fit is short, the next one fails with ENOSPC, as on Linux).

Simplifications: ``replace``, ``remove``, ``overwrite`` and the path-level ``truncate`` are durable at
once (the real ones fsync the file; the rename of ``replace`` is atomic but only durable once the
directory is synced: a ledger that reverts after a power cut means records drained twice, not lost).
"""

from __future__ import annotations

import enum
import errno
import fnmatch
import os
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citytelemetry.sink.spool.fileops import FileOps


class Fault(enum.Enum):
    ENOSPC = errno.ENOSPC
    EIO = errno.EIO
    SHORT = 0  # a write that writes half (at least one byte) and returns the count


@dataclass(slots=True)
class _File:
    data: bytearray = field(default_factory=bytearray)  # what readers see
    synced: bytes = b""  # what a crash leaves
    durable_entry: bool = False  # its directory entry survives a crash


def _error(code: int, path: Path | None = None) -> OSError:
    return OSError(code, os.strerror(code), *([str(path)] if path is not None else []))


class MemoryFileOps:
    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity  # bytes the disk holds, over all files (None: unbounded)
        self.files: dict[Path, _File] = {}
        self.dirs: set[Path] = set()
        self.locks: set[Path] = set()
        self.calls: defaultdict[str, int] = defaultdict(int)
        self._faults: defaultdict[str, deque[Fault]] = defaultdict(deque)

    # -- faults ----------------------------------------------------------------------------------
    def inject(self, operation: str, fault: Fault, times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` ("write", "sync", "open_append", "replace",
        "overwrite", "truncate", "sync_dir", "read") fail with ``fault``."""
        self._faults[operation].extend([fault] * times)

    def pending_faults(self) -> int:
        return sum(len(queue) for queue in self._faults.values())

    def _check(self, operation: str, path: Path | None = None) -> Fault | None:
        self.calls[operation] += 1
        queue = self._faults.get(operation)
        if not queue:
            return None
        fault = queue.popleft()
        if fault is not Fault.SHORT:
            raise _error(fault.value, path)
        return fault

    def crash(self) -> None:
        """A power cut: unsynced bytes and unsynced new files are gone; locks are dropped."""
        self.files = {path: _File(bytearray(f.synced), f.synced, durable_entry=True)
                      for path, f in self.files.items() if f.durable_entry}
        self.locks.clear()

    # -- damage from outside (a disk fault, an operator's mistake) -------------------------------
    def cut(self, path: Path, size: int) -> None:
        file = self.files[path]
        del file.data[size:]
        file.synced = bytes(file.data)

    def used(self) -> int:
        return sum(len(f.data) for f in self.files.values())

    # -- FileOps ---------------------------------------------------------------------------------
    def make_dir(self, directory: Path) -> None:
        if any(directory == p or directory.is_relative_to(p) for p in self.files):
            raise _error(errno.ENOTDIR, directory)
        self.dirs.add(directory)

    def lock(self, path: Path) -> _MemoryLock:
        if path in self.locks:
            raise BlockingIOError(errno.EWOULDBLOCK, os.strerror(errno.EWOULDBLOCK))
        self.locks.add(path)
        return _MemoryLock(self, path)

    def list(self, directory: Path, pattern: str) -> list[Path]:
        return [p for p in self.files if p.parent == directory and fnmatch.fnmatchcase(p.name, pattern)]

    def read_bytes(self, path: Path) -> bytes:
        self._check("read", path)
        return bytes(self._get(path).data)

    def open_append(self, path: Path) -> _MemoryAppendFile:
        self._check("open_append", path)
        if path.parent not in self.dirs:
            raise _error(errno.ENOENT, path)
        file = self.files.setdefault(path, _File())
        return _MemoryAppendFile(self, file)

    def open_read(self, path: Path) -> _MemoryReadFile:
        return _MemoryReadFile(self._get(path))

    def truncate(self, path: Path, size: int) -> None:
        self._check("truncate", path)
        self.cut(path, size)

    def sync_dir(self, directory: Path) -> None:
        self._check("sync_dir", directory)
        for path, file in self.files.items():
            if path.parent == directory:
                file.durable_entry = True

    def remove(self, path: Path) -> None:
        self._get(path)
        del self.files[path]

    def size(self, path: Path) -> int:
        return len(self._get(path).data)

    def replace(self, path: Path, data: bytes) -> None:
        self._check("replace", path)
        if path.parent not in self.dirs:
            raise _error(errno.ENOENT, path)
        old = self.files.get(path)
        if self.capacity is not None and self.used() - (len(old.data) if old else 0) + len(data) > self.capacity:
            raise _error(errno.ENOSPC, path)
        self.files[path] = _File(bytearray(data), data, durable_entry=True)

    def overwrite(self, path: Path, data: bytes) -> None:
        self._check("overwrite", path)
        file = self._get(path)
        room = self._room()
        if room is not None and len(data) - len(file.data) > room:
            raise _error(errno.ENOSPC, path)
        file.data[:] = data
        file.synced = bytes(data)

    def _get(self, path: Path) -> _File:
        file = self.files.get(path)
        if file is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        return file

    def _room(self) -> int | None:
        return None if self.capacity is None else max(0, self.capacity - self.used())


class _MemoryLock:
    def __init__(self, fs: MemoryFileOps, path: Path) -> None:
        self._fs, self._path = fs, path

    def release(self) -> None:
        self._fs.locks.discard(self._path)


class _MemoryAppendFile:
    def __init__(self, fs: MemoryFileOps, file: _File) -> None:
        self._fs, self._file = fs, file

    def write(self, data: bytes) -> int:
        fault = self._fs._check("write")  # noqa: SLF001 - the fake's own parts
        room = self._fs._room()  # noqa: SLF001
        size = len(data)
        if fault is Fault.SHORT:
            size = max(1, size // 2)
        if room is not None and size > room:
            if room == 0:
                raise _error(errno.ENOSPC)
            size = room  # what fits: a short write; the next one fails with ENOSPC
        self._file.data += data[:size]
        return size

    def sync(self) -> None:
        self._fs._check("sync")  # noqa: SLF001
        self._file.synced = bytes(self._file.data)

    def truncate(self, size: int) -> None:
        self._fs._check("truncate")  # noqa: SLF001
        del self._file.data[size:]
        self._file.synced = self._file.synced[:size]

    def size(self) -> int:
        return len(self._file.data)

    def close(self) -> None:
        return None


class _MemoryReadFile:
    def __init__(self, file: _File) -> None:
        self._file, self._offset = file, 0

    def read(self, size: int, /) -> bytes:
        chunk = bytes(self._file.data[self._offset:self._offset + size])
        self._offset += len(chunk)
        return chunk

    def close(self) -> None:
        return None


if TYPE_CHECKING:  # mypy checks the fake against the protocol it stands in for
    _checked: FileOps = MemoryFileOps()
