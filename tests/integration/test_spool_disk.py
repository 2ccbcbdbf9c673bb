"""A spool on a real disk smaller than one segment (a 1 MiB tmpfs; segments are 8 MiB).

The fault audit found such a spool stalled forever once everything was drained (the active segment was
never freed) and called it "short write: 399 of 2109 bytes". Here the whole pipeline runs as a process
against real mosquitto and InfluxDB, with three times the disk's size of traffic: the disk fills, the
pipeline says so in words, frees the drained segment, and everything lands.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from simulators.generate import DistrictSimulator, Pacing
from simulators.publishing import publish

from citytelemetry.services import free_port
from citytelemetry.testing import wait_until_sync
from tests.conftest import MqttBroker

from .pipeline_harness import shipped_catalog
from .process_harness import PipelineProcess, wait_for_audit

pytestmark = pytest.mark.integration

DISK_BYTES = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_BYTES (needs root: mount(2)); unmounted afterwards."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the same faults are covered through the I/O seam")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_spool_disk_smaller_than_one_segment_fills_says_so_and_keeps_going(
        tmp_path: Path, small_disk: Path, mosquitto: MqttBroker, influxdb: str) -> None:
    catalog = shipped_catalog()
    prefix, database = f"spooldisk/{uuid.uuid4().hex[:8]}", f"spooldisk_{uuid.uuid4().hex[:8]}"
    process = PipelineProcess(mqtt_url=mosquitto.url, influx_url=influxdb, database=database, prefix=prefix,
                              client_id=f"ct-spooldisk-{uuid.uuid4().hex[:6]}", spool_dir=small_disk / "spool",
                              log_file=tmp_path / "pipeline.log", http__port=str(free_port()))
    process.start()
    try:
        sim = DistrictSimulator(catalog, seed=5, duration_s=None, max_messages=12_000, pacing=Pacing(rate=3000),
                                systems=["tunnel"], max_devices=200, topic_prefix=prefix)
        summary = publish(sim, mosquitto.url, client_id=f"ct-spooldisk-sim-{uuid.uuid4().hex[:6]}", timeout_s=60)
        expected = Counter(summary.points_by_device)
        found = wait_for_audit(influxdb, database, catalog, expected, timeout_s=90)
        assert found == expected
        wait_until_sync(lambda: process.metric("citytelemetry_spool_depth_records") == 0, 30, "all drained")
        metrics = process.metrics()
        assert metrics["citytelemetry_spool_write_failures_total"] >= 1  # the disk did fill
        assert metrics["citytelemetry_spool_bytes"] < DISK_BYTES
        assert metrics["citytelemetry_spool_records_lost_total"] == 0
        log = process.log_file.read_text()
        assert "spool disk full: cannot append" in log
        assert "short write" not in log
        assert "freed the drained active segment" in log
    finally:
        process.stop_quietly()
