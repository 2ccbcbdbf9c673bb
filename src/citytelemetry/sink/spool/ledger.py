"""The ledger: how far the spool has been drained, and how far it had been acknowledged.

One small file (format in ``records.py``), replaced atomically about once a second (rewritten in place
when the disk is too full for a temporary file). The drained id says
where the feeder resumes after a restart; the committed id lets recovery tell a torn, never acknowledged
write from acknowledged records that are gone. Like Vector's disk buffer ledger it is flushed on an
interval, not per commit (that would double the fsyncs on the acknowledgement path), so it may lag the
segments by up to one interval: loss among records acknowledged in that last interval is not provable.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

from citytelemetry.sink.spool.fileops import FileOps

LEDGER = "drained"
PAD = 64  # the file is padded with spaces to a multiple of this: rewriting it in place never grows it


IdRange = tuple[int, int]  # first and last id, inclusive


@dataclass(slots=True, frozen=True)
class Marks:
    drained: int = 0  # records up to this id are in InfluxDB
    committed: int = 0  # records up to this id were fsync'd and acknowledged
    gaps: tuple[IdRange, ...] = ()  # lost ids above ``drained`` already reported: not reported twice


class Ledger:
    def __init__(self, directory: Path, ops: FileOps) -> None:
        self._path = directory / LEDGER
        self._ops = ops
        self.saved = Marks()

    def load(self) -> Marks:
        try:
            text = self._ops.read_bytes(self._path).decode("ascii").split()
        except FileNotFoundError:
            return self.saved
        drained = int(text[0]) if text else 0
        committed = int(text[1]) if len(text) > 1 else drained  # a ledger from before the committed id
        gaps = tuple(_id_range(word) for word in text[2:])
        self.saved = Marks(drained, max(committed, drained), gaps)
        return self.saved

    def save(self, marks: Marks) -> bool:
        """Persist ``marks`` if they moved; returns whether anything was written."""
        marks = Marks(marks.drained, marks.committed, tuple(g for g in marks.gaps if g[1] > marks.drained))
        if marks == self.saved:
            return False
        words = [str(marks.drained), str(marks.committed), *(f"{a}-{b}" for a, b in marks.gaps)]
        text = " ".join(words).encode()
        data = text.ljust(-(-len(text) // PAD) * PAD)
        try:
            self._ops.replace(self._path, data)
        except OSError as exc:
            # A full disk has no room for the temporary file, yet this is the write that lets drained
            # segments be deleted: rewrite the old file's space in place (one sector, written whole).
            if exc.errno not in {errno.ENOSPC, errno.EDQUOT}:
                raise
            self._ops.overwrite(self._path, data)
        self.saved = marks
        return True


def _id_range(word: str) -> IdRange:
    first, _, last = word.partition("-")
    return int(first), int(last)
