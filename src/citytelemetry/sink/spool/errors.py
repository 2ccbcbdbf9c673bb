"""The spool's errors, in words an operator can act on."""

from __future__ import annotations

import errno
from pathlib import Path

# What an errno means for a spool disk. Anything else is reported with the system's own text.
_IN_WORDS = {
    errno.ENOSPC: "spool disk full",
    errno.EDQUOT: "spool disk quota exceeded",
    errno.EIO: "spool disk failing (I/O error)",
    errno.EROFS: "spool disk is read-only",
}


class SpoolError(Exception):
    """The spool directory cannot be used; the message says which and why."""


class CorruptSpoolError(Exception):
    """The spool on disk does not hold what its bookkeeping says: never silently skip data."""


class SpoolWriteError(OSError):
    """Appending a commit group failed; nothing of it is acknowledged. ``str()`` says why in words."""

    def __init__(self, code: int | None, detail: str, directory: Path, size: int) -> None:
        super().__init__(code, detail)
        self.directory = directory
        self.size = size

    @property
    def full(self) -> bool:
        """The disk (or quota) is full: waiting for the drain to free space may help."""
        return self.errno in {errno.ENOSPC, errno.EDQUOT}

    def __str__(self) -> str:
        words = _IN_WORDS.get(self.errno or 0, "spool write failed")
        return f"{words}: cannot append {self.size} bytes to {self.directory} ({self.strerror})"


def write_error(exc: OSError, directory: Path, size: int) -> SpoolWriteError:
    return SpoolWriteError(exc.errno, exc.strerror or str(exc), directory, size)
