"""The benchmark harness at a tiny scale: every part produces figures and every count adds up (no timings).

Not --baseline: it needs the repository's history (tests/unit/test_bench_codetree.py covers its checkout)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from bench.machine import hot_path_compiled

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_tiny_run_produces_figures_and_exact_counts(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--scale", "0.002", "--subscribers", "paho,paho311,mosquitto_sub",
         "--no-synthetic", "--results", str(results), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=420, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    parts = {(r["part"], r["workload"]) for r in rows}
    assert {("a", "W1"), ("a", "W2"), ("b", "W1"), ("b", "W2"), ("c", "W1"), ("c", "W2"), ("d", "W1"),
            ("d", "W2"), ("e", "W1"), ("f", "W1"), ("g", "W1")} <= parts
    for row in rows:
        assert row["points_per_s"] > 0, row
        if row["part"] == "a":
            assert row["received"] == row["expected"], row
        else:  # b-f: what landed in InfluxDB, counted by InfluxQL, is exactly what was published or written
            assert row["landed"] == row["expected"], row
        if row["part"] in {"c", "d"}:
            assert (row["rejected"], row["lost"]) == (0, 0), row
            assert row["cpu_s_per_100k"] >= 0  # a tiny compiled drain can use less than one 10 ms CPU tick
            assert row["peak_rss_mib"] > 0
            pipelines = ["pipeline 1", "pipeline 2", "pipeline 3"] if row["part"] == "d" else ["pipeline 1"]
            assert sorted(row["cores"]) == sorted([*pipelines, "mosquitto", "influxd"]), row
            # >= 0, not > 0: at this scale a drain can be shorter than the 10 ms tick of /proc/stat
            assert all(cores >= 0 for cores in row["cores"].values()), row
            assert row["machine_cores"] >= 0, row
            assert "cores busy: pipeline 1 " in row["details"], row
            assert row["gc_longest_ms"] >= 0, row  # scraped from the pipeline's own /metrics
            assert "device_offline" not in row["alerts"], row  # our own drain is not device silence
        if row["part"] == "d":  # three members, each on its own devices' topics: every message reached one
            assert row["what"] == "citytelemetry run, 3 partitioned members (pipeline.partition 1/3 … 3/3)", row
            assert sorted(row["member_messages"]) == ["member 1", "member 2", "member 3"], row
            assert all(n > 0 for n in row["member_messages"].values()), row
            assert sum(row["member_messages"].values()) == row["messages"], row
        if row["part"] == "g":
            assert 0 < row["rss_warm_mib"] <= row["peak_rss_mib"], row
            assert 0 < row["rss_end_mib"] <= row["peak_rss_mib"], row
        if row["part"] == "e":
            assert math.isfinite(row["p50_ms"]), row
            assert math.isfinite(row["p99_ms"]), row
    recorded = results.read_text()
    assert "| part | load | measurement |" in recorded
    assert "- commit: " in recorded
    assert "(c)/(a) pipeline / bare paho subscriber, the faster of MQTT 5 / 3.1.1" in recorded
    assert "Targets of issue 15 (this run):" in recorded
    assert "- load: at the start: load average " in recorded
    assert "(d)/(c) 3 partitioned members / one" in recorded
    compiled = hot_path_compiled()
    assert ("- build: hot path compiled with mypyc" if compiled else "- build: pure Python") in recorded
    pure_rows = [r for r in rows if r["part"] == "c" and "pure Python" in r["what"]]
    assert len(pure_rows) == (2 if compiled else 0)  # W1 and W2, beside the compiled default
    assert ("(c) compiled hot path / pure Python" in recorded) == compiled
