"""Liveness and readiness from the pipeline's counters: which conditions make which answer."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from citytelemetry.observability.health import Condition, HealthCheck
from citytelemetry.observability.http import from_this_host, make_app
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.sink.spool.wal import SpoolStats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def check(*, spool: bool = True) -> tuple[PipelineStats, HealthCheck, Clock]:
    stats = PipelineStats(mqtt_connected=True)
    if spool:
        stats.spool = SpoolStats()
        stats.spool_full = lambda: False
    clock = Clock()
    return stats, HealthCheck(stats, stall_s=60, clock=clock), clock


def test_a_quiet_connected_pipeline_is_live_and_ready() -> None:
    _, health, _ = check()
    assert health.observe().body() == {"status": "ok", "live": True, "ready": True, "not_ready": [],
                                       "degraded": [], "stalled": []}


def test_influxdb_down_while_the_spool_absorbs_is_ready_and_degraded() -> None:
    stats, health, clock = check()
    stats.write.consecutive_failures = 3
    stats.write.buffered_lines = 5000
    stats.in_flight_messages = 10
    assert stats.spool is not None
    stats.spool.depth_records = 40_000
    health.observe()
    clock.now += 600  # ten minutes of outage: nothing drains, nothing is written, and that is not "stuck"
    stats.messages_settled += 1
    answer = health.observe()
    assert (answer.live, answer.ready, answer.degraded, answer.stalled) == (
        True, True, (Condition.INFLUXDB_FAILING,), ())
    assert answer.body()["status"] == "degraded"


def test_influxdb_down_without_a_spool_is_not_ready() -> None:
    stats, health, _ = check(spool=False)
    stats.write.consecutive_failures = 1
    answer = health.observe()
    assert (answer.live, answer.ready, answer.not_ready) == (True, False, (Condition.INFLUXDB_FAILING,))


def test_a_full_or_failing_spool_and_a_lost_broker_are_not_ready() -> None:
    stats, health, _ = check()
    stats.spool_full = lambda: True
    assert stats.spool is not None
    stats.spool.last_error = "spool write failed: [Errno 28] No space left on device: '/var/lib/x'"
    stats.mqtt_connected = False
    answer = health.observe()
    assert answer.not_ready == (Condition.BROKER_DISCONNECTED, Condition.SPOOL_FULL, Condition.SPOOL_WRITE_FAILING)
    assert (answer.live, answer.ready) == (True, False)
    assert "Errno" not in str(answer.body())  # reason codes only, never the error's text


def test_work_waiting_without_progress_or_cause_is_stuck_after_the_stall_time() -> None:
    stats, health, clock = check()
    stats.in_flight_messages = 5  # received, not acknowledged, nothing outside explains it
    assert health.observe().live
    clock.now += 59
    assert health.observe().live
    clock.now += 1
    answer = health.observe()
    assert (answer.live, answer.ready, answer.stalled) == (False, False, (Condition.ACKNOWLEDGING_STALLED,))
    assert answer.body()["status"] == "stuck"
    stats.messages_settled += 5  # progress again: alive at once
    stats.in_flight_messages = 0
    assert health.observe().live


def test_buffered_lines_that_are_never_written_are_a_stuck_writer() -> None:
    stats, health, clock = check()
    stats.write.buffered_lines = 100
    health.observe()
    clock.now += 30
    stats.write.retries += 1  # a retry is the writer at work
    health.observe()
    clock.now += 59
    assert health.observe().live
    clock.now += 1
    assert health.observe().stalled == (Condition.WRITING_STALLED,)


def test_spooled_records_that_never_drain_while_influxdb_is_fine_are_a_stuck_drain() -> None:
    stats, health, clock = check()
    assert stats.spool is not None
    stats.spool.depth_records = 10
    health.observe()
    clock.now += 60
    assert health.observe().stalled == (Condition.DRAINING_STALLED,)


def test_the_stall_clock_does_not_run_while_an_outside_cause_holds_the_stage_back() -> None:
    stats, health, clock = check()
    assert stats.spool is not None
    stats.spool.depth_records = 10
    stats.write.consecutive_failures = 1
    health.observe()
    clock.now += 3600
    assert health.observe().live
    stats.write.consecutive_failures = 0  # InfluxDB is back: the drain has a full stall time to move
    clock.now += 1
    assert health.observe().live
    clock.now += 59
    assert not health.observe().live


async def test_endpoints_answer_with_status_codes_and_metrics_show_every_condition() -> None:
    stats, health, _ = check()
    stats.write.consecutive_failures = 1
    stats.write.last_error = "HTTP 503 from http://secret-host:8086: database is gone"
    async with TestClient(TestServer(make_app(stats, health))) as client:
        for path, status in (("/livez", 200), ("/readyz", 200), ("/healthz", 200)):
            response = await client.get(path)
            assert (path, response.status) == (path, status)
            assert (await response.json())["degraded"] == ["influxdb_failing"]
        stats.spool_full = lambda: True
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 503
        assert (await client.get("/livez")).status == 200
        text = await (await client.get("/metrics")).text()
    assert "secret-host" not in text
    conditions = {line.split('"')[1]: line.split()[-1] for line in text.splitlines()
                  if line.startswith("citytelemetry_health_condition{")}
    assert conditions == {c.value: "1.0" if c in {Condition.SPOOL_FULL, Condition.INFLUXDB_FAILING} else "0.0"
                          for c in Condition}
    assert "citytelemetry_ready 0.0" in text
    assert "citytelemetry_live 1.0" in text


@pytest.mark.parametrize(("remote", "local"), [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.7", False), ("::ffff:10.0.0.7", False), ("2001:db8::1", False), (None, False), ("", False),
])
def test_reload_is_taken_from_this_host_only(remote: str | None, local: bool) -> None:
    assert from_this_host(remote) is local
