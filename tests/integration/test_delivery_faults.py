"""Delivery guarantees under faults, proven by auditing device sequence numbers in InfluxDB.

Each test publishes a known stream (QoS 1) through a real mosquitto to ``citytelemetry run``
processes writing a real InfluxDB 1.x, injures something mid-stream, and then requires that every
valid reading is in InfluxDB exactly once per device (same counts as the simulator's manifest).
Outages are shortened (seconds, not the issue's 30-60 s) to keep CI fast; the mechanisms are the same.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from simulators.district import DistrictSimulator, Pacing, Progress, Summary, publish

from citytelemetry.profiles import Catalog
from citytelemetry.services import ManagedService
from citytelemetry.testing import wait_until_sync

from .pipeline_harness import shipped_catalog
from .process_harness import (  # noqa: F401 - the fixtures "broker" and "influx"
    PipelineProcess,
    broker_fixture,
    influx_fixture,
    mqtt_url,
    pipeline_process,
    wait_for_audit,
)

pytestmark = pytest.mark.integration

RATE = 400  # messages per second
MESSAGES = 2400  # six seconds of traffic


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return shipped_catalog()


def simulation(catalog: Catalog, prefix: str, messages: int = MESSAGES, rate: float = RATE) -> DistrictSimulator:
    return DistrictSimulator(catalog, seed=3, duration_s=None, max_messages=messages, pacing=Pacing(rate=rate),
                             systems=["tunnel"], max_devices=200, topic_prefix=prefix)


class Publisher:
    """Publishes the simulation in a thread; ``sent`` as it goes (about once a second), ``summary`` once done."""

    def __init__(self, sim: DistrictSimulator, url: str) -> None:
        self.summary: Summary | None = None
        self.error: BaseException | None = None
        self.sent = 0
        self._thread = threading.Thread(target=self._run, args=(sim, url), daemon=True)
        self._thread.start()

    def _run(self, sim: DistrictSimulator, url: str) -> None:
        try:
            self.summary = publish(sim, url, client_id=f"ct-fault-sim-{uuid.uuid4().hex[:6]}", timeout_s=60,
                                   progress=self._progress)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread by result()
            self.error = exc

    def _progress(self, progress: Progress) -> None:
        self.sent = progress.messages_sent

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait_sent_beyond(self, count: int, timeout_s: float = 20) -> None:
        """Until ``count`` more messages than now were published (or the run ended): the broker queues them."""
        target = self.sent + count
        wait_until_sync(lambda: self.sent >= target or self.done, timeout_s, f"{count} more messages published")

    def result(self, timeout_s: float = 90) -> Summary:
        self._thread.join(timeout_s)
        if self.error is not None:
            raise self.error
        assert self.summary is not None, "publisher did not finish"
        return self.summary


def pipeline(tmp_path: Path, broker: ManagedService, influx: ManagedService, prefix: str, database: str, *,
             client_id: str = "ct-fault-1", **extra: str) -> PipelineProcess:
    return pipeline_process(tmp_path, broker, influx, prefix, database, client_id=client_id, **extra)


def wait_metric(process: PipelineProcess, name: str, at_least: float, timeout_s: float = 30) -> float:
    """Until the process reports ``name`` >= ``at_least`` (a bounded wait); returns the value seen."""
    wait_until_sync(lambda: process.metric(name) >= at_least, timeout_s, f"{name} >= {at_least}")
    return process.metric(name)


SETTLED = "citytelemetry_messages_settled_total"  # acknowledged: fsync'd in the spool
WRITTEN = "citytelemetry_points_written_total"  # in InfluxDB
DEPTH = "citytelemetry_spool_depth_records"
EARLY = MESSAGES // 8  # a fault comes once this much of the stream is acknowledged, long before its end


def assert_all_landed(influx: ManagedService, database: str, catalog: Catalog, summary: Summary,
                      timeout_s: float = 60) -> None:
    expected = Counter(summary.points_by_device)
    assert sum(expected.values()) == summary.expected_points > 0
    found = wait_for_audit(influx.url, database, catalog, expected, timeout_s)
    missing = {d: expected[d] - found[d] for d in expected if found[d] < expected[d]}
    extra = {d: found[d] - expected[d] for d in found if found[d] > expected[d]}
    assert (missing, extra) == ({}, {})


def test_kill_9_mid_stream_then_restart_loses_nothing(tmp_path: Path, broker: ManagedService,
                                                      influx: ManagedService, catalog: Catalog) -> None:
    process = pipeline(tmp_path, broker, influx, "fault/kill", "kill9")
    process.start()
    try:
        publisher = Publisher(simulation(catalog, "fault/kill"), mqtt_url(broker))
        settled = wait_metric(process, SETTLED, EARLY)
        process.kill()  # mid-stream: some messages spooled, perhaps not drained; some unacknowledged
        assert EARLY <= settled < MESSAGES
        publisher.wait_sent_beyond(200)  # the broker queues for the dead session meanwhile
        process.start()
        assert_all_landed(influx, "kill9", catalog, publisher.result())
    finally:
        process.stop_quietly()


def test_influxdb_outage_under_load_is_spooled_and_drained(tmp_path: Path, broker: ManagedService,
                                                           influx: ManagedService, catalog: Catalog) -> None:
    process = pipeline(tmp_path, broker, influx, "fault/influx", "outage")
    process.start()
    try:
        publisher = Publisher(simulation(catalog, "fault/influx"), mqtt_url(broker))
        wait_metric(process, WRITTEN, 1)  # writing to InfluxDB before it goes
        influx.stop()
        settled = process.metric(SETTLED)
        # The stream keeps being acknowledged meanwhile, into the spool (its depth also counts records that
        # were on their way to InfluxDB when it stopped, so the settled count is what is waited for).
        wait_metric(process, SETTLED, settled + 200)
        assert process.metric(DEPTH) >= 200
        influx.start()
        summary = publisher.result()
        assert_all_landed(influx, "outage", catalog, summary)
        assert "failed" in process.log()  # the outage was seen and retried, not silently skipped
    finally:
        process.stop_quietly()


def test_broker_restart_under_load(tmp_path: Path, broker: ManagedService, influx: ManagedService,
                                   catalog: Catalog) -> None:
    process = pipeline(tmp_path, broker, influx, "fault/broker", "brokerrestart")
    process.start()
    try:
        publisher = Publisher(simulation(catalog, "fault/broker"), mqtt_url(broker))
        wait_metric(process, SETTLED, EARLY)
        broker.stop()  # SIGTERM: mosquitto saves its persistent sessions and queues
        wait_until_sync(lambda: process.metric("citytelemetry_mqtt_connected") == 0, 20, "the pipeline saw it go")
        broker.start()
        summary = publisher.result()
        assert_all_landed(influx, "brokerrestart", catalog, summary)
    finally:
        process.stop_quietly()


def test_full_spool_pushes_back_to_the_broker_then_recovers(tmp_path: Path, broker: ManagedService,
                                                            influx: ManagedService, catalog: Catalog) -> None:
    process = pipeline(tmp_path, broker, influx, "fault/full", "spoolfull",
                       pipeline__spool_max_bytes=str(1024 * 1024), pipeline__spool_memory_lines="100")
    process.start()
    try:
        influx.stop()
        sim = simulation(catalog, "fault/full", messages=12000, rate=4000)
        publisher = Publisher(sim, mqtt_url(broker))
        summary = publisher.result()  # the broker took everything: its queue holds what the spool cannot
        wait_metric(process, "citytelemetry_spool_bytes", 1024 * 1024)
        metrics = process.metrics()
        # The spool stopped at its bound and the pipeline stopped acknowledging: the broker holds the rest.
        assert 1024 * 1024 <= metrics["citytelemetry_spool_bytes"] < 1.2 * 1024 * 1024
        assert metrics[SETTLED] < summary.messages_sent
        influx.start()
        assert_all_landed(influx, "spoolfull", catalog, summary, timeout_s=90)
    finally:
        process.stop_quietly()


def test_sigterm_under_load_exits_cleanly_and_loses_nothing(tmp_path: Path, broker: ManagedService,
                                                            influx: ManagedService, catalog: Catalog) -> None:
    process = pipeline(tmp_path, broker, influx, "fault/term", "sigterm")
    process.start()
    try:
        publisher = Publisher(simulation(catalog, "fault/term"), mqtt_url(broker))
        assert wait_metric(process, SETTLED, EARLY) < MESSAGES  # under load: mid-stream
        started = time.monotonic()
        assert process.terminate() == 0
        assert time.monotonic() - started < 25
        assert "stopped:" in process.log()
        process.start()
        assert_all_landed(influx, "sigterm", catalog, publisher.result())
    finally:
        process.stop_quietly()


def test_shared_subscription_member_killed_mid_stream(tmp_path: Path, broker: ManagedService,
                                                      influx: ManagedService, catalog: Catalog) -> None:
    first = pipeline(tmp_path, broker, influx, "fault/shared", "shared", client_id="ct-shared-a",
                     mqtt__shared_group="ingest")
    second = pipeline(tmp_path, broker, influx, "fault/shared", "shared", client_id="ct-shared-b",
                      mqtt__shared_group="ingest")
    first.start()
    second.start()
    try:
        publisher = Publisher(simulation(catalog, "fault/shared"), mqtt_url(broker))
        wait_metric(first, SETTLED, EARLY // 2)
        assert wait_metric(second, SETTLED, EARLY // 2) < MESSAGES  # both members share the stream
        second.kill()
        publisher.wait_sent_beyond(200)
        # Messages in flight to the killed member stay with its session (mosquitto issue 2662):
        # they are delivered when that member reconnects, so a member must come back under its id.
        second.start()
        assert_all_landed(influx, "shared", catalog, publisher.result())
    finally:
        first.stop_quietly()
        second.stop_quietly()


def test_unwritable_spool_directory_is_a_clear_error_and_acknowledges_nothing(
        tmp_path: Path, broker: ManagedService, influx: ManagedService) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    process = PipelineProcess(mqtt_url=mqtt_url(broker), influx_url=influx.url, database="unwritable",
                              prefix="fault/unwritable", client_id="ct-unwritable", spool_dir=blocker / "spool",
                              log_file=tmp_path / "unwritable.log")
    with pytest.raises(AssertionError, match="pipeline exited with 2"):
        process.start()
    assert f"spool directory {blocker / 'spool'} is not writable" in process.log()
