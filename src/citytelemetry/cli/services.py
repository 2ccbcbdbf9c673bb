"""``citytelemetry services up|down|status``: the local broker, database and alertmanager for dev runs.

The broker runs with a password file and ACLs generated from the inventory (anonymous access off)
(``services.stack``, docs/security.md). ``up`` also creates the database's retention tiers (raw and the
rollup tiers of ``[storage]``, docs/storage.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Literal, TextIO

from citytelemetry.config import Settings
from citytelemetry.services import ManagedService, ServiceError, ServiceState, managed_services

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3  # LSB: "program is not running"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    services = commands.add_parser("services", help="local mosquitto, InfluxDB and Alertmanager")
    services.add_argument("action", choices=["up", "down", "status"])
    services.add_argument("--insecure-anonymous", action="store_true",
                          help="run the broker without credentials and ACLs (development only)")


def handle(args: argparse.Namespace, settings: Settings) -> int:
    return services_command(args.action, settings, anonymous=args.insecure_anonymous)


def services_command(
    action: Literal["up", "down", "status"],
    settings: Settings,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    anonymous: bool = False,
) -> int:
    """Start, stop or report mosquitto, influxd and alertmanager under ``settings.services.run_dir``.

    ``anonymous`` runs the broker without credentials or ACLs (an explicit, insecure opt-out).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        services = managed_services(settings, prepare=action == "up", anonymous=anonymous)
    except ServiceError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_FAILED
    if action == "up":
        code = _up(services, out, err)
        return _tiers(settings, out, err) if code == EXIT_OK else code
    if action == "down":
        return _down(services, out)
    return _status(services, out)


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


def _tiers(settings: Settings, out: TextIO, err: TextIO) -> int:
    """The local influxd runs without authentication: the tiers are created as anonymous."""
    from citytelemetry.security.local import security_dir
    from citytelemetry.security.tls import LocalPki
    from citytelemetry.storage.retention import RetentionError, apply_v1, policies

    ca_file = settings.influx.ca_file
    if ca_file is None and settings.influx.url.startswith("https:"):
        ca_file = LocalPki(security_dir(settings) / "tls").ca.cert  # the server certificate `up` made
    try:
        apply_v1(settings.storage, settings.influx, ca_file=ca_file)
    except RetentionError as exc:
        err.write(f"error: storage tiers: {exc}\n")
        return EXIT_FAILED
    tiers = ", ".join(f"{p.name} {p.duration}" for p in policies(settings.storage, settings.influx))
    out.write(f"retention policies of {settings.influx.database!r}: {tiers}\n")
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
