"""``citytelemetry services up|down|status``: the local broker, database and alertmanager for dev runs."""

from __future__ import annotations

import sys
from typing import Literal, TextIO
from urllib.parse import urlsplit

from citytelemetry.config import Settings
from citytelemetry.services import definitions
from citytelemetry.services.errors import ServiceError
from citytelemetry.services.managed import ManagedService, ServiceState

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3  # LSB: "program is not running"


def services_command(
    action: Literal["up", "down", "status"],
    settings: Settings,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Start, stop or report mosquitto, influxd and alertmanager under ``settings.services.run_dir``."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        services = managed_services(settings)
    except ServiceError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_FAILED
    if action == "up":
        return _up(services, out, err)
    if action == "down":
        return _down(services, out)
    return _status(services, out)


def managed_services(settings: Settings) -> list[ManagedService]:
    """The services ``services_command`` manages, in start order."""
    run_dir = settings.services.run_dir
    specs = [
        definitions.mosquitto(run_dir, _local_port("mqtt.url", settings.mqtt.url, 1883)),
        definitions.influxd(run_dir, _local_port("influx.url", settings.influx.url, 8086)),
        definitions.alertmanager(run_dir, _local_port("alertmanager.url", settings.alertmanager.url, 9093)),
    ]
    return [ManagedService(spec) for spec in specs]


def _local_port(key: str, url: str, default: int) -> int:
    parts = urlsplit(url)
    if parts.hostname not in _LOCAL_HOSTS:
        raise ServiceError(f"{key} = {url!r} is not on 127.0.0.1; only local services can be managed")
    return parts.port or default


def _up(services: list[ManagedService], out: TextIO, err: TextIO) -> int:
    foreign = [st for st in (s.status() for s in services) if st.state is ServiceState.PORT_TAKEN]
    err.writelines(
        f"error: {st.name}: {st.url} is in use by a process not started from this run directory; "
        "refusing to start anything (stop that process or change the port in the configuration)\n"
        for st in foreign
    )
    if foreign:
        return EXIT_FAILED
    started: list[ManagedService] = []
    try:
        for service in services:
            if service.start():
                started.append(service)  # noqa: PERF401 - must know what started before a failure
    except ServiceError as exc:
        err.write(f"error: {exc}\n")
        for service in reversed(started):
            service.stop()
        return EXIT_FAILED
    for service in services:
        note = "started" if service in started else "already running"
        out.write(f"{service.status().line()}  ({note})\n")
    return EXIT_OK


def _down(services: list[ManagedService], out: TextIO) -> int:
    for service in reversed(services):
        pid = service.pid
        note = f"stopped pid {pid}" if service.stop() else "was not running"
        out.write(f"{service.status().line()}  ({note})\n")
    return EXIT_OK


def _status(services: list[ManagedService], out: TextIO) -> int:
    statuses = [s.status() for s in services]
    out.writelines(st.line() + "\n" for st in statuses)
    return EXIT_OK if all(st.state is ServiceState.RUNNING for st in statuses) else EXIT_NOT_RUNNING
