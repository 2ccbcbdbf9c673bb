"""Three partitioned ``citytelemetry run`` processes on one mosquitto, one killed -9 and restarted.

Every reading lands exactly once, every device is counted by exactly one member (its ``instance`` on
``ct_completeness``) at completeness 1.0, and replays are refused, after the kill too: the restarted
member restores its device state from its checkpoint.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from simulators.district import SimMessage

from citytelemetry.profiles import Catalog
from tests.conftest import MqttBroker, influx_query

from .pipeline_harness import shipped_catalog
from .process_harness import PipelineProcess, wait_for_audit
from .test_ordering import Publisher, device_streams

pytestmark = pytest.mark.integration
MEMBERS = 3


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return shipped_catalog()


def member(tmp_path: Path, broker: MqttBroker, influx_url: str, database: str, prefix: str, k: int) -> PipelineProcess:
    home = tmp_path / f"member-{k}"
    home.mkdir(exist_ok=True)
    return PipelineProcess(mqtt_url=broker.url, influx_url=influx_url, database=database, prefix=prefix,
                           client_id=f"ct-part-{uuid.uuid4().hex[:6]}-{k}", spool_dir=home / "spool",
                           log_file=home / "pipeline.log", pipeline__partition=f"{k}/{MEMBERS}",
                           pipeline__checkpoint_file=str(home / "device-state.ckpt"),
                           pipeline__checkpoint_interval_s="0.5", pipeline__selfmetrics_interval_s="0.5")


def last_completeness(influx_url: str, database: str) -> dict[str, tuple[str, float, int]]:
    """device -> (instance, completeness, duplicates) of its latest ct_completeness point."""
    series = influx_query(influx_url, database, "SELECT last(completeness) AS c, last(duplicates) AS d "
                          "FROM ct_completeness GROUP BY device, instance")
    out: dict[str, tuple[str, float, int]] = {}
    for s in series:
        device, instance = s["tags"]["device"], s["tags"]["instance"]
        assert device not in out, f"{device} counted by {out[device][0]} and {instance}"
        out[device] = (instance, s["values"][0][1], s["values"][0][2])
    return out


def test_three_members_one_killed_and_restarted_land_every_reading_once(
        tmp_path: Path, mosquitto: MqttBroker, influxdb: str, influx_db_name: str, mqtt_topic_prefix: str,
        catalog: Catalog) -> None:
    streams = device_streams(catalog, mqtt_topic_prefix, devices=12, per_device=60)
    rng = random.Random(3)
    shuffled: list[SimMessage] = rng.sample([m for s in streams.values() for m in s],
                                            sum(len(s) for s in streams.values()))
    replays = [s[1] for s in streams.values()]  # sent again after everything: refused, also after the kill
    members = [member(tmp_path, mosquitto, influxdb, influx_db_name, mqtt_topic_prefix, k) for k in (1, 2, 3)]
    publisher = Publisher(mosquitto)
    try:
        for process in members:
            process.start()
        done = threading.Event()

        def publish() -> None:
            publisher.publish(shuffled)
            done.set()

        thread = threading.Thread(target=publish, name="shuffled-publisher")
        thread.start()
        deadline = time.monotonic() + 30
        checkpoint = tmp_path / "member-2" / "device-state.ckpt"
        while not checkpoint.exists() and time.monotonic() < deadline and not done.is_set():
            time.sleep(0.05)  # member 2 has taken part of the stream and saved its state once
        time.sleep(0.5)
        members[1].kill()  # -9, mid-stream: some readings spooled, some unacknowledged
        members[1].start()  # restores its checkpoint; its session redelivers what was not acknowledged
        thread.join(60)
        assert done.is_set()
        publisher.publish(replays)
        expected = Counter({device_id: len(stream) for device_id, stream in streams.items()})
        found = wait_for_audit(influxdb, influx_db_name, catalog, expected, 60)
        assert found == expected
        deadline = time.monotonic() + 30
        figures = last_completeness(influxdb, influx_db_name)
        while (sorted(figures) != sorted(streams) or any(d < 1 for _, _, d in figures.values())) \
                and time.monotonic() < deadline:
            time.sleep(0.5)
            figures = last_completeness(influxdb, influx_db_name)
        assert sorted(figures) == sorted(streams)
        assert {device: c for device, (_, c, _) in figures.items()} == dict.fromkeys(streams, 1.0)
        assert all(duplicates >= 1 for _, _, duplicates in figures.values())  # each replay refused
        assert len({instance for instance, _, _ in figures.values()}) == MEMBERS
    finally:
        publisher.close()
        for process in members:
            process.stop_quietly()
