"""Process primitives: spawn detached, find our own processes again, terminate them.

A process is recognised as ours only by its pid file *and* its command line: ``/proc/<pid>/cmdline``
must carry the service's marker path (its config file in the run directory). A recycled pid, or a
process someone else started, never matches, so it is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_POLL_S = 0.02


def spawn(argv: Sequence[str], *, log_file: Path, env: Mapping[str, str]) -> int:
    """Start ``argv`` in its own session, stdin from /dev/null, stdout+stderr appended to ``log_file``."""
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        return os.posix_spawn(
            argv[0],
            list(argv),
            dict(env),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,  # Ctrl-C in the terminal that ran `up` does not reach the services
        )
    finally:
        os.close(log_fd)


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie; reaps it if it is our exited child."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    state = stat.rpartition(")")[2].split(maxsplit=1)[:1]
    return state != ["Z"]


def command_line(pid: int) -> list[str]:
    """The arguments of ``pid`` (empty if it is gone, a zombie or not readable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def runs_with(pid: int, marker: Path) -> bool:
    """True if ``pid`` is alive and has ``marker`` as an argument (``path`` or ``--flag=path``)."""
    wanted = str(marker)
    args = command_line(pid)
    return is_running(pid) and any(arg == wanted or arg.endswith("=" + wanted) for arg in args)


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL and wait; False if it still runs."""
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        if wait_gone(pid, wait_s):
            return True
    return False


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited; False if it is still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while is_running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def write_pid_file(path: Path, pid: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    tmp.replace(path)


def log_tail(path: Path, lines: int = 20, max_bytes: int = 16_384) -> str:
    """The last ``lines`` lines of a log file ('' if there is none)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
