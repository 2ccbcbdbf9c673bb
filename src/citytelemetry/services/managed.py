"""``ManagedService``: start, stop and inspect one local service instance that we own."""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from citytelemetry.services import procs
from citytelemetry.services.errors import PortInUseError, ServiceError, ServiceStartError
from citytelemetry.services.ports import port_is_free
from citytelemetry.services.spec import ServiceSpec, find_binary

_POLL_S = 0.02


class ServiceState(enum.Enum):
    RUNNING = "running"  # started by us and answering its readiness probe
    UNRESPONSIVE = "unresponsive"  # started by us, process alive, not answering
    STOPPED = "stopped"
    PORT_TAKEN = "port taken"  # not ours, but another process holds its port


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    pid: int | None
    url: str
    state: ServiceState

    def line(self) -> str:
        pid = str(self.pid) if self.pid is not None else "-"
        return f"{self.name:<17} pid={pid:<8} {self.url:<28} {self.state.value}"


class ManagedService:
    """One service instance under ``spec.home``; it only ever signals a process it started.

    As a context manager it starts the service on entry (or finds it already running) and, on exit,
    stops it only if this entry started it. It refuses to be entered twice.
    """

    def __init__(self, spec: ServiceSpec, *, start_timeout: float = 30.0, stop_timeout: float = 10.0) -> None:
        self.spec = spec
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._entered = False
        self._started_on_enter = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def pid(self) -> int | None:
        """The pid of our running instance, or None (a stale or foreign pid is never returned)."""
        pid = procs.read_pid_file(self.spec.pid_file)
        if pid is None or not procs.runs_with(pid, self.spec.marker):
            return None
        return pid

    def status(self) -> ServiceStatus:
        pid = self.pid
        if pid is not None:
            state = ServiceState.RUNNING if self.spec.probe() else ServiceState.UNRESPONSIVE
        elif not port_is_free(self.spec.port):
            state = ServiceState.PORT_TAKEN
        else:
            state = ServiceState.STOPPED
        return ServiceStatus(self.name, pid, self.url, state)

    def start(self) -> bool:
        """Start and wait until ready; False if our instance was already running."""
        if self.pid is not None:
            return False
        binary = find_binary(self.spec.binary)
        self._check_ports()
        env = {k: v for k, v in os.environ.items() if not k.startswith(self.spec.drop_env_prefixes)}
        try:
            self._prepare()
            pid = procs.spawn((binary, *self.spec.args), log_file=self.spec.log_file, env=env)
        except OSError as exc:
            raise ServiceError(f"{self.name}: cannot start {binary} in {self.spec.home}: {exc}") from exc
        try:
            procs.write_pid_file(self.spec.pid_file, pid)
            self._wait_ready(pid)
        except BaseException:
            procs.terminate(pid, self.stop_timeout)
            self.spec.pid_file.unlink(missing_ok=True)
            raise
        return True

    def stop(self) -> bool:
        """Stop our instance (SIGTERM, then SIGKILL after ``stop_timeout``); False if none was running."""
        pid = self.pid
        if pid is None:
            self.spec.pid_file.unlink(missing_ok=True)  # stale: its process is gone or is not ours
            return False
        if not procs.terminate(pid, self.stop_timeout):
            raise ServiceError(f"{self.name}: pid {pid} survived SIGKILL")
        self.spec.pid_file.unlink(missing_ok=True)
        return True

    def __enter__(self) -> Self:
        if self._entered:
            raise RuntimeError(f"{self.name}: this ManagedService is already in use as a context manager")
        self._started_on_enter = self.start()
        self._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        if self._started_on_enter:
            self.stop()

    def _check_ports(self) -> None:
        for port in self.spec.ports:
            if not port_is_free(port):
                raise PortInUseError(
                    f"{self.name}: port 127.0.0.1:{port} is in use by a process that was not started "
                    f"from {self.spec.home}; stop it or configure another port"
                )

    def _prepare(self) -> None:
        for path in (self.spec.home, *self.spec.dirs):
            path.mkdir(parents=True, exist_ok=True)
        for file in self.spec.files:
            file.write()

    def _wait_ready(self, pid: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not self.spec.probe():
            if not procs.is_running(pid):
                raise self._start_error(f"exited during start (pid {pid})")
            if time.monotonic() >= deadline:
                raise self._start_error(f"not ready at {self.url} after {self.start_timeout:g} s (pid {pid})")
            time.sleep(_POLL_S)

    def _start_error(self, what: str) -> ServiceStartError:
        log = self.spec.log_file
        tail = procs.log_tail(log) or "(empty)"
        return ServiceStartError(f"{self.name} {what}; last lines of {log}:\n{tail}")
