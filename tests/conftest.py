"""Shared fixtures: real services on free loopback ports, and per-test names for isolation.

Services are session-scoped (one instance per test run, stopped at session end) and started only when
a test asks for them. Isolate tests by name instead: a unique database (``influx_db_name``) or topic
prefix (``mqtt_topic_prefix``) per test. A missing binary fails the test with a message naming it;
nothing is skipped.

Tests import the plain helpers with ``from tests.conftest import influx_query``.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from citytelemetry.services import ManagedService, ServiceError, ServiceSpec, definitions, free_port


@dataclass(frozen=True, slots=True)
class MqttBroker:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def influx_query(url: str, db: str, q: str) -> list[dict[str, Any]]:
    """Run InfluxQL ``q`` against ``db`` (POST /query, epoch=ms); the series of the first statement."""
    body = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"}).encode()
    request = urllib.request.Request(f"{url}/query", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        results = json.load(response)["results"]
    if "error" in results[0]:
        raise AssertionError(f"InfluxQL {q!r} on {db!r} failed: {results[0]['error']}")
    series: list[dict[str, Any]] = results[0].get("series", [])
    return series


@contextlib.contextmanager
def _serve(spec: ServiceSpec) -> Iterator[ManagedService]:
    service = ManagedService(spec)
    try:
        service.start()
    except ServiceError as exc:
        pytest.fail(f"cannot start {spec.name} for the tests: {exc}", pytrace=False)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of the session's services (each under its own subdirectory)."""
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def mosquitto(services_dir: Path) -> Iterator[MqttBroker]:
    """A mosquitto broker on a free port: ``.host``, ``.port``, ``.url`` (mqtt://127.0.0.1:<port>)."""
    with _serve(definitions.mosquitto(services_dir, free_port())) as service:
        yield MqttBroker("127.0.0.1", service.spec.port)


@pytest.fixture(scope="session")
def influxdb(services_dir: Path) -> Iterator[str]:
    """The URL of an InfluxDB 1.x (influxd) on a free port, auth off; create databases as needed."""
    with _serve(definitions.influxd(services_dir, free_port())) as service:
        yield service.url


@pytest.fixture(scope="session")
def alertmanager(services_dir: Path) -> Iterator[str]:
    """The URL of an Alertmanager on a free port (deploy/alertmanager.yml, clustering off)."""
    with _serve(definitions.alertmanager(services_dir, free_port())) as service:
        yield service.url


@pytest.fixture(scope="session")
def victoria_metrics(services_dir: Path) -> Iterator[str]:
    """The URL of a VictoriaMetrics single-node on a free port."""
    with _serve(definitions.victoria_metrics(services_dir, free_port())) as service:
        yield service.url


@pytest.fixture
def influx_db_name() -> str:
    """A database name no other test uses (not created: the code under test or the test does that)."""
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mqtt_topic_prefix() -> str:
    """A topic prefix no other test uses, e.g. ``test/3f2a9c0d1e4b``."""
    return f"test/{uuid.uuid4().hex[:12]}"
