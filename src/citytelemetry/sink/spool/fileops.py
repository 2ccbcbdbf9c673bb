"""The spool's one I/O seam: every file operation it does, behind a small protocol.

``OsFileOps`` (the default) is the real thing: plain ``os`` calls, ``fsync`` where durability needs it.
Tests pass a fault-injecting in-memory filesystem instead (short writes, ENOSPC, EIO, a crash that drops
what was never synced), as Vector's disk buffer model tests do: the fault is an input, not a monkeypatch.
Methods raise ``OSError`` as the ``os`` calls do; the spool turns errnos into words (``errors.py``).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Protocol

from citytelemetry.atomicfile import replace_file


class AppendFile(Protocol):
    """A segment open for appending (O_APPEND): what is written becomes durable at ``sync``."""

    def write(self, data: bytes) -> int:
        """Append; returns how much was written (may be short, as ``os.write``)."""

    def sync(self) -> None: ...

    def truncate(self, size: int) -> None: ...

    def size(self) -> int: ...

    def close(self) -> None: ...


class ReadFile(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class Lock(Protocol):
    def release(self) -> None: ...


class FileOps(Protocol):
    def make_dir(self, directory: Path) -> None:
        """``mkdir -p``."""

    def lock(self, path: Path) -> Lock:
        """An exclusive lock held until released; ``BlockingIOError`` if another holder has it."""

    def list(self, directory: Path, pattern: str) -> list[Path]: ...

    def read_bytes(self, path: Path) -> bytes: ...

    def open_append(self, path: Path) -> AppendFile:
        """Open for appending, creating the file if missing (its directory entry is not yet durable)."""

    def open_read(self, path: Path) -> ReadFile: ...

    def truncate(self, path: Path, size: int) -> None:
        """Cut a file to ``size`` bytes, durably."""

    def sync_dir(self, directory: Path) -> None:
        """Make created, renamed and removed entries of ``directory`` durable."""

    def remove(self, path: Path) -> None: ...

    def size(self, path: Path) -> int: ...

    def replace(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically: a reader sees the old content or the new, whole."""

    def overwrite(self, path: Path, data: bytes) -> None:
        """Write ``data`` over an existing file in place, durably: needs no new space on a full disk."""


class _OsAppendFile:
    __slots__ = ("_fd",)

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, data: bytes) -> int:
        return os.write(self._fd, data)

    def sync(self) -> None:
        os.fsync(self._fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        os.close(self._fd)


class _OsLock:
    __slots__ = ("_fd",)

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise

    def release(self) -> None:
        os.close(self._fd)  # closing drops the flock


class OsFileOps:
    """The real filesystem."""

    def make_dir(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)

    def lock(self, path: Path) -> Lock:
        return _OsLock(path)

    def list(self, directory: Path, pattern: str) -> list[Path]:
        return list(directory.glob(pattern))

    def read_bytes(self, path: Path) -> bytes:
        return path.read_bytes()

    def open_append(self, path: Path) -> AppendFile:
        return _OsAppendFile(path)

    def open_read(self, path: Path) -> ReadFile:
        return path.open("rb")

    def truncate(self, path: Path, size: int) -> None:
        with path.open("r+b") as handle:
            handle.truncate(size)
            os.fsync(handle.fileno())

    def sync_dir(self, directory: Path) -> None:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def remove(self, path: Path) -> None:
        path.unlink()

    def size(self, path: Path) -> int:
        return path.stat().st_size

    def replace(self, path: Path, data: bytes) -> None:
        replace_file(path, data, mode=0o644)  # the rename is made durable too (directory fsync)

    def overwrite(self, path: Path, data: bytes) -> None:
        with path.open("r+b") as handle:
            handle.write(data)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
