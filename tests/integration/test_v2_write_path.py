"""The InfluxDB v2 write path (influxdb-client's async API) against a real VictoriaMetrics, which serves
``/api/v2/write``; read back through its export API. VictoriaMetrics names each field's series
``<measurement>_<field>``, keeps tags as labels, and ignores org and bucket; the server is shared by the
session, so reads are bounded by this run's time window and, for dead letters, its pipeline ``instance``.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections import Counter

import pytest
from pydantic import SecretStr
from simulators.district import DistrictSimulator, Pacing

from citytelemetry.config import InfluxSettings
from tests.conftest import MqttBroker

from .pipeline_harness import pipeline_settings, publish_and_settle, running_pipeline, shipped_catalog, wait_for

pytestmark = pytest.mark.integration


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


def _rows_added(vm_url: str) -> int:
    for line in _get(f"{vm_url}/metrics").decode().splitlines():
        if line.startswith("vm_rows_added_to_storage_total "):
            return int(line.split()[1])
    raise AssertionError("vm_rows_added_to_storage_total not exported")


def _export(vm_url: str, selector: str, start_ms: int, end_ms: int) -> list[dict[str, object]]:
    query = urllib.parse.urlencode({"match[]": selector, "start": start_ms / 1000, "end": end_ms / 1000})
    return [json.loads(line) for line in _get(f"{vm_url}/api/v1/export?{query}").splitlines() if line]


async def test_pipeline_writes_through_the_v2_api(mosquitto: MqttBroker, victoria_metrics: str,
                                                  mqtt_topic_prefix: str) -> None:
    catalog = shipped_catalog()
    influx = InfluxSettings(url=victoria_metrics, api="v2", org="district", bucket="telemetry",
                            token=SecretStr("not-checked-by-victoria-metrics"))
    settings = pipeline_settings(mosquitto.url, mqtt_topic_prefix, influx)
    sim = DistrictSimulator(catalog, seed=23, duration_s=None, max_messages=600, pacing=Pacing(speed=0),
                            systems=["station"], topic_prefix=mqtt_topic_prefix,
                            faults={"out_of_range": 3, "not_json": 2})
    rows_before = _rows_added(victoria_metrics)
    async with running_pipeline(settings, catalog) as pipeline:
        summary = await publish_and_settle(pipeline, sim, mosquitto.url)
    assert pipeline.stats.write.lines_written > 0
    # Rows = one per numeric/bool/string field of every line written (points, rejects, status).
    await wait_for(lambda: _rows_added(victoria_metrics) > rows_before, 20, "rows stored")
    _get(f"{victoria_metrics}/internal/force_flush")

    assert summary.first_ts_ms is not None
    assert summary.last_ts_ms is not None
    start, end = summary.first_ts_ms, summary.last_ts_ms
    counts: Counter[str] = Counter()
    for type_name in summary.points_by_type:
        series = _export(victoria_metrics, f'{{__name__="{type_name}_seq",site="hunnan"}}', start, end)
        counts[type_name] = sum(len(s["values"]) for s in series)  # type: ignore[arg-type]
    assert counts == Counter(summary.points_by_type)

    # A sample reading round-trips with its value and timestamp.
    message = next(m for m in sim.messages() if not m.faults)
    body = json.loads(message.payload)
    key, value = next((k, v) for k, v in body["values"].items() if isinstance(v, float))
    device = catalog.devices[body["device"]]
    [series] = _export(victoria_metrics, f'{{__name__="{device.profile.type}_{key}",device="{device.id}"}}',
                       body["ts"], body["ts"])
    assert series["values"] == [value]
    assert series["timestamps"] == [body["ts"]]
    # The rejects went through the same v2 path.
    instance = settings.mqtt.client_id
    rejects = _export(victoria_metrics, f'{{__name__="ct_rejects_count",instance="{instance}"}}', 0,
                      end + 3_600_000)
    reasons = Counter(s["metric"]["reason"] for s in rejects for _ in s["values"])  # type: ignore[index]
    assert reasons == Counter({"out_of_range": 3, "not_json": 2})
