"""Run ``citytelemetry run`` as a real process (to kill -9 it, SIGTERM it) and audit what landed.

``broker`` and ``influx`` are private services a test may stop and start; a test module that wants them
imports their fixtures from here (``from .process_harness import broker_fixture, influx_fixture``), and
``pipeline_process`` builds a process on them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from citytelemetry.profiles import Catalog
from citytelemetry.services import ManagedService, definitions, free_port
from tests.conftest import influx_query

from .pipeline_harness import ROOT


class PipelineProcess:
    def __init__(self, *, mqtt_url: str, influx_url: str, database: str, prefix: str, client_id: str,
                 spool_dir: Path, log_file: Path, **extra: str) -> None:
        self.env = {**os.environ,
                    "CITYTELEMETRY_MQTT__URL": mqtt_url, "CITYTELEMETRY_MQTT__TOPIC_PREFIX": prefix,
                    "CITYTELEMETRY_MQTT__CLIENT_ID": client_id, "CITYTELEMETRY_INFLUX__URL": influx_url,
                    "CITYTELEMETRY_INFLUX__DATABASE": database, "CITYTELEMETRY_HTTP__PORT": "0",
                    "CITYTELEMETRY_PIPELINE__SPOOL_DIR": str(spool_dir),
                    "CITYTELEMETRY_PIPELINE__FLUSH_INTERVAL_S": "0.2",
                    "CITYTELEMETRY_PIPELINE__PROFILES_DIR": str(ROOT / "device_profiles" / "types"),
                    "CITYTELEMETRY_PIPELINE__INVENTORY_DIR": str(ROOT / "device_profiles" / "inventory"),
                    "CITYTELEMETRY_ALERTS__ENABLED": "false",
                    **{f"CITYTELEMETRY_{k.upper()}": v for k, v in extra.items()}}
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "citytelemetry", "run"], env=self.env, stdout=log, stderr=log,
                cwd=self.log_file.parent)
        self.wait_for_log("subscribed to", 30)

    def wait_for_log(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log_file.read_text(errors="replace"):
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"pipeline exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in the pipeline log after {timeout_s} s:\n{self.log()}")
            time.sleep(0.05)

    def metrics(self) -> dict[str, float]:
        """Its /metrics (unlabelled samples), when started with an ``http__port``."""
        port = self.env["CITYTELEMETRY_HTTP__PORT"]
        assert port != "0", "start the process with http__port to read its metrics"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                if line and not line.startswith("#") and "{" not in line}

    def metric(self, name: str) -> float:
        try:
            return self.metrics().get(name, 0.0)
        except OSError:  # not listening yet, or gone
            return 0.0

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def points_by_device(influx_url: str, database: str, catalog: Catalog) -> Counter[str]:
    sources = ",".join(f'"{t}"' for t in sorted(catalog.profiles))
    counts: Counter[str] = Counter()
    for series in influx_query(influx_url, database, f"SELECT count(seq) FROM {sources} GROUP BY device"):
        counts[series["tags"]["device"]] += series["values"][0][1]
    return counts


def wait_for_audit(influx_url: str, database: str, catalog: Catalog, expected: Counter[str],
                   timeout_s: float) -> Counter[str]:
    """Wait until InfluxDB holds exactly the expected points per device; return what it holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = points_by_device(influx_url, database, catalog)
        except (OSError, AssertionError):  # database not created yet, or InfluxDB restarting
            found = Counter()
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture(name="broker")  # named apart from the fixture, so a test's ``broker`` argument shadows no import
def broker_fixture(tmp_path: Path) -> Iterator[ManagedService]:
    """A private mosquitto (persistence on) that a test may stop and start."""
    with ManagedService(definitions.mosquitto(tmp_path / "services", free_port())) as service:
        yield service


@pytest.fixture(name="influx")
def influx_fixture(tmp_path: Path) -> Iterator[ManagedService]:
    """A private InfluxDB that a test may stop and start."""
    with ManagedService(definitions.influxd(tmp_path / "services", free_port())) as service:
        yield service


def mqtt_url(service: ManagedService) -> str:
    return f"mqtt://127.0.0.1:{service.spec.port}"


def pipeline_process(tmp_path: Path, broker: ManagedService, influx: ManagedService, prefix: str, database: str, *,
                     client_id: str, **extra: str) -> PipelineProcess:
    """A process on ``broker`` and ``influx`` with its own spool and log under ``tmp_path`` and its /metrics on
    a free port (unless ``http__port`` is given): the tests read them to know when to inject a fault."""
    extra.setdefault("http__port", str(free_port()))
    return PipelineProcess(mqtt_url=mqtt_url(broker), influx_url=influx.url, database=database, prefix=prefix,
                           client_id=client_id, spool_dir=tmp_path / f"spool-{client_id}",
                           log_file=tmp_path / f"{client_id}.log", **extra)
