"""Crash-safe replacement of a small state file: the old content or the new survives, never a torn file.

Write a temporary file beside it, fsync it, rename it over the old one, then fsync the directory so the
rename itself survives a power loss. Used by the device-state checkpoint (run/checkpoint.py), the alert
state (alerts/state.py), the rollups' dirty windows (storage/windows.py), the credentials
(security/credentials.py) and the spool's ledger (sink/spool/fileops.py).
"""

from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """``path`` holds ``data`` afterwards, durably; a crash meanwhile leaves the old file (or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: two writers never share one
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask, and a leftover tmp keeps its own
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
