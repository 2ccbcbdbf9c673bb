"""/livez and /readyz of a real ``citytelemetry run`` through real outages: InfluxDB down with the spool
absorbing (ready, degraded), the spool full (not ready), the broker gone (not ready); alive throughout."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from simulators.district import DistrictSimulator, Pacing, publish

from citytelemetry.services import ManagedService, free_port

from .pipeline_harness import shipped_catalog
from .process_harness import (  # noqa: F401 - the fixtures "broker" and "influx"
    broker_fixture,
    influx_fixture,
    mqtt_url,
    pipeline_process,
)

pytestmark = pytest.mark.integration


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def wait_for_status(port: int, path: str, code: int, status: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        got, body = probe(port, path)
        if (got, body["status"]) == (code, status):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: wanted {code} {status}, still {got} {body}")
        time.sleep(0.1)


def wait_until_settled(port: int, messages: int, timeout_s: float) -> None:
    """Until /metrics counts ``messages`` settled (durable, so acknowledged)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("citytelemetry_messages_settled_total ") and float(line.split()[1]) >= messages:
                    return
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {messages} messages settled within {timeout_s:g} s")
        time.sleep(0.1)


def test_ready_and_live_through_an_influxdb_outage_a_full_spool_and_a_broker_outage(
        tmp_path: Path, broker: ManagedService, influx: ManagedService) -> None:
    http_port, url = free_port(), mqtt_url(broker)
    process = pipeline_process(tmp_path, broker, influx, "health", "health", client_id="ct-health-1",
                               pipeline__spool_max_bytes=str(1024 * 1024), pipeline__spool_memory_lines="100",
                               http__port=str(http_port))
    process.start()
    catalog = shipped_catalog()
    try:
        assert wait_for_status(http_port, "/readyz", 200, "ok")["not_ready"] == []
        influx.stop()
        small = DistrictSimulator(catalog, seed=5, duration_s=None, max_messages=200, pacing=Pacing(rate=400),
                                  systems=["tunnel"], max_devices=50, topic_prefix="health")
        publish(small, url, client_id="ct-health-sim-1", timeout_s=60)
        body = wait_for_status(http_port, "/readyz", 200, "degraded")
        assert body == {"status": "degraded", "live": True, "ready": True, "not_ready": [],
                        "degraded": ["influxdb_failing"], "stalled": []}
        assert probe(http_port, "/healthz") == (200, body)
        assert probe(http_port, "/livez")[0] == 200

        flood = DistrictSimulator(catalog, seed=6, duration_s=None, max_messages=12000, pacing=Pacing(rate=4000),
                                  systems=["tunnel"], max_devices=200, topic_prefix="health")
        publish(flood, url, client_id="ct-health-sim-2", timeout_s=90)
        body = wait_for_status(http_port, "/readyz", 503, "not_ready")
        assert (body["not_ready"], body["degraded"]) == (["spool_full"], ["influxdb_failing"])
        assert probe(http_port, "/livez") == (200, body)  # the same facts; alive
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'citytelemetry_health_condition{condition="spool_full"} 1.0' in metrics
        assert "citytelemetry_ready 0.0" in metrics
        assert "127.0.0.1" not in json.dumps(body)  # no error text, no address

        influx.start()  # the spool drains, acknowledging resumes, the broker's backlog comes through
        # Ready again may come while the backlog is still coming and can fill the spool once more: wait for
        # every message to be settled, so that what follows is the broker outage alone.
        wait_until_settled(http_port, 200 + 12000, timeout_s=120)
        wait_for_status(http_port, "/readyz", 200, "ok", timeout_s=120)

        broker.stop()
        body = wait_for_status(http_port, "/readyz", 503, "not_ready")
        assert body["not_ready"] == ["broker_disconnected"]
        assert probe(http_port, "/livez")[0] == 200
        broker.start()
        wait_for_status(http_port, "/readyz", 200, "ok")
    finally:
        process.stop_quietly()
