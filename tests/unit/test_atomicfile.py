"""The crash-safe replacement every small state file goes through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from citytelemetry.atomicfile import replace_file


def test_the_file_holds_the_new_data_with_its_mode_and_no_temporary_is_left(tmp_path: Path) -> None:
    path = tmp_path / "state" / "device-state.ckpt"
    leftover = path.parent / f".{path.name}.{os.getpid()}.tmp"
    path.parent.mkdir()
    leftover.write_bytes(b"from a crash")
    leftover.chmod(0o666)  # a leftover temporary keeps its mode unless it is set again
    old_umask = os.umask(0o077)
    try:
        replace_file(path, b"old")
        replace_file(path, b"new" * 100_000, mode=0o644)  # umask 077 would make it 0600
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"new" * 100_000
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["device-state.ckpt"]
