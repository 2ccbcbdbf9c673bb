"""Run the real pipeline in-process against real services, and publish simulated traffic to it."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from simulators.district import DistrictSimulator, Summary, publish

from citytelemetry.config import HttpSettings, InfluxSettings, MqttSettings, PipelineSettings, Settings, StorageSettings
from citytelemetry.profiles import Catalog, load_catalog
from citytelemetry.run import Pipeline, build_pipeline

ROOT = Path(__file__).resolve().parents[2]


def shipped_catalog() -> Catalog:
    return load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")


def pipeline_settings(mqtt_url: str, topic_prefix: str, influx: InfluxSettings, **pipeline: object) -> Settings:
    """Settings for one test's pipeline; its spool and dead-letter store live in fresh temporary directories
    unless given."""
    client_id = f"ct-test-{uuid.uuid4().hex[:8]}"
    pipeline.setdefault("spool_dir", Path(tempfile.gettempdir()) / "citytelemetry-test-spools" / client_id)
    pipeline.setdefault("deadletter_dir", Path(tempfile.gettempdir()) / "citytelemetry-test-deadletters" / client_id)
    pipeline.setdefault("checkpoint_file", Path(tempfile.gettempdir()) / "citytelemetry-test-spools" /
                        f"{client_id}.device-state.ckpt")
    return Settings(
        mqtt=MqttSettings(url=mqtt_url, topic_prefix=topic_prefix, client_id=client_id),
        influx=influx,
        http=HttpSettings(port=0),
        storage=StorageSettings(checkpoint_file=Path(tempfile.gettempdir()) / "citytelemetry-test-spools" /
                                f"{client_id}.rollup-windows.json"),
        pipeline=PipelineSettings(profiles_dir=ROOT / "device_profiles" / "types",
                                  inventory_dir=ROOT / "device_profiles" / "inventory",
                                  flush_interval_s=0.2, selfmetrics_interval_s=3600, **pipeline),  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running_pipeline(settings: Settings, catalog: Catalog) -> AsyncIterator[Pipeline]:
    pipeline = build_pipeline(settings, catalog)
    task = asyncio.create_task(pipeline.run())
    try:
        await wait_for(lambda: pipeline.stats.mqtt_connected, 10, "pipeline connected")
        yield pipeline
    finally:
        pipeline.stop()
        await asyncio.wait_for(task, 30)


async def wait_for(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for: {what}")
        await asyncio.sleep(0.05)


async def publish_and_settle(pipeline: Pipeline, sim: DistrictSimulator, mqtt_url: str) -> Summary:
    """Publish the whole run, then wait until the pipeline has settled (written and acked) every message."""
    summary = await asyncio.to_thread(publish, sim, mqtt_url, client_id=f"ct-test-sim-{uuid.uuid4().hex[:8]}")
    total = summary.messages_sent + summary.status_messages
    await wait_for(lambda: pipeline.stats.messages_settled >= total, 60,
                   f"{total} messages settled (now {pipeline.stats.messages_settled})")
    return summary
