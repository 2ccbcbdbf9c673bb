"""Private broker and database for one benchmark run: free loopback ports, a temporary run directory."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citytelemetry.services import ManagedService, definitions, free_port


@dataclass(slots=True)
class Services:
    mqtt_host: str
    mqtt_port: int
    influx: ManagedService
    broker: ManagedService
    alertmanager: ManagedService  # the pipelines page here: never a developer's own on 19093

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.mqtt_host}:{self.mqtt_port}"

    @property
    def influx_url(self) -> str:
        return self.influx.url

    def pids(self) -> dict[str, int]:
        """The services' process ids by name, for CPU accounting."""
        found = {"mosquitto": self.broker.pid, "influxd": self.influx.pid}
        return {name: pid for name, pid in found.items() if pid is not None}


@contextlib.contextmanager
def private_services(run_dir: Path) -> Iterator[Services]:
    broker = ManagedService(definitions.mosquitto(run_dir, free_port()))
    influx = ManagedService(definitions.influxd(run_dir, free_port()))
    alertmanager = ManagedService(definitions.alertmanager(run_dir, free_port()))
    with broker, influx, alertmanager:
        yield Services("127.0.0.1", broker.spec.port, influx, broker, alertmanager)


def influx_query(url: str, db: str, q: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """InfluxQL ``q`` on ``db``; the series of the first statement ([] when there are none)."""
    body = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"}).encode()
    request = urllib.request.Request(f"{url}/query", data=body, method="POST")  # noqa: S310 - our own http:// URL
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        results = json.load(response)["results"]
    if "error" in results[0]:
        raise RuntimeError(f"InfluxQL {q!r} on {db!r}: {results[0]['error']}")
    series: list[dict[str, Any]] = results[0].get("series", [])
    return series


def measurement_regex(measurements: Sequence[str]) -> str:
    """An InfluxQL regex matching exactly these measurements (names are profile identifiers)."""
    return "/^(" + "|".join(measurements) + ")$/"


def count_points(url: str, db: str, measurements: Sequence[str], field: str = "seq") -> int:
    """Points of ``measurements`` in ``db`` (0 when the database or a measurement does not exist yet)."""
    try:
        series = influx_query(url, db, f'SELECT count("{field}") FROM {measurement_regex(measurements)}')  # noqa: S608
    except RuntimeError as exc:
        if "database not found" in str(exc):
            return 0
        raise
    return sum(int(s["values"][0][1]) for s in series)


def create_database(url: str, db: str) -> None:
    influx_query(url, db, f'CREATE DATABASE "{db}"')
