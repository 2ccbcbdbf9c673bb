"""README command (a) at a small scale: `citytelemetry demo` starts its services, runs simulators and
the pipeline, prints a per-system summary checked by InfluxQL, and stops what it started."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from citytelemetry.services import free_port

from .pipeline_harness import ROOT

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end_and_cleans_up(tmp_path: Path) -> None:
    env = {**os.environ,
           "CITYTELEMETRY_MQTT__URL": f"mqtt://127.0.0.1:{free_port()}",
           "CITYTELEMETRY_INFLUX__URL": f"http://127.0.0.1:{free_port()}",
           "CITYTELEMETRY_ALERTMANAGER__URL": f"http://127.0.0.1:{free_port()}",
           "CITYTELEMETRY_HTTP__PORT": "0",
           "CITYTELEMETRY_SERVICES__RUN_DIR": str(tmp_path / "run"),
           "CITYTELEMETRY_PIPELINE__SPOOL_DIR": str(tmp_path / "spool"),
           "CITYTELEMETRY_PIPELINE__PROFILES_DIR": str(ROOT / "device_profiles" / "types"),
           "CITYTELEMETRY_PIPELINE__INVENTORY_DIR": str(ROOT / "device_profiles" / "inventory"),
           "CITYTELEMETRY_ALERTS__STATE_FILE": str(tmp_path / "alert-state.json"),
           "CITYTELEMETRY_ALERTS__RULES_DIR": str(ROOT / "alert_rules")}
    result = subprocess.run([sys.executable, "-m", "citytelemetry", "--log-level", "ERROR", "demo",
                             "--duration", "4", "--rate", "200", "--bad", "12", "--stop-services"],
                            env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    rows = {m["system"]: (int(m["sent"]), int(m["landed"]), int(m["influx"]))
            for m in re.finditer(r"^  (?P<system>tunnel|station|network)\s+(?P<sent>\d+)\s+(?P<landed>\d+)\s+"
                                 r"(?P<influx>\d+)\s+\d+$", out, re.MULTILINE)}
    assert set(rows) == {"tunnel", "station", "network"}
    for system, (sent, landed, in_influx) in rows.items():
        assert sent == landed == in_influx, (system, out)
    reasons = re.search(r"rejections by reason: (.*)$", out, re.MULTILINE)
    assert reasons is not None
    assert sum(int(n) for n in re.findall(r" (\d+)(?:,|$)", reasons.group(1))) == 12
    assert "stopped the services this demo started (mosquitto, influxd, alertmanager)" in out
    assert "GROUP BY device SLIMIT 3" in out  # LIMIT would return every device's series
    assert re.search(r"received \d+ messages = \d+ telemetry messages \(of them 12 injected faults\) "
                     r"\+ \d+ status", out)
