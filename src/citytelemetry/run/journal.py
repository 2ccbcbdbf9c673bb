"""The device-state journal: the readings made durable since the last checkpoint (run/checkpoint.py).

One ``device seq ts`` line a reading, appended by the handler as its readings land, and written to the
file just before their PUBACKs (``flush``, called ahead of each socket write). Compiled with mypyc
(scripts/compile_hotpath.py): ``record`` runs once per reading, and from the compiled handler it is then
a native call, not an interpreted one (the handler had copied its line format to avoid that call).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


class Journal:
    """The readings made durable since the last checkpoint, written before their PUBACKs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.number = 0
        self._entries: list[str] = []
        self._fd: int | None = None

    def file(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.journal.{number}")

    def open(self, number: int) -> None:
        if self._fd is not None:
            self.flush()
            os.close(self._fd)
        self.number = number
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.file(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def record(self, device_id: str, seq: int, timestamp_ms: int) -> None:
        self._entries.append(f"{device_id} {seq} {timestamp_ms}\n")

    def flush(self) -> None:
        """Called before the source writes to the broker (so before a PUBACK goes out)."""
        if self._entries and self._fd is not None:
            data = "".join(self._entries).encode()
            self._entries.clear()
            os.write(self._fd, data)

    def close(self) -> None:
        if self._fd is not None:
            self.flush()
            os.close(self._fd)
            self._fd = None

    def replay(self, number: int) -> Iterator[tuple[str, int, int]]:
        """The entries of journals ``number`` and later (a torn last line is skipped)."""
        while self.file(number).exists():
            for line in self.file(number).read_text(errors="replace").splitlines():
                parts = line.split(" ")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].lstrip("-").isdigit():
                    yield parts[0], int(parts[1]), int(parts[2])
            number += 1

    def drop_before(self, number: int) -> None:
        for old in self.path.parent.glob(f"{self.path.name}.journal.*"):
            suffix = old.name.rsplit(".", 1)[-1]
            if suffix.isdigit() and int(suffix) < number:
                old.unlink(missing_ok=True)
