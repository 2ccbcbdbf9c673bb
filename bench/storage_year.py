"""Storage bench: a simulated span (default 7 days, up to a year) of one tunnel section and the energy station.

    python -m bench.storage_year --days 365        # the year of the issue (hours on a loaded 2-core machine)
    python -m bench.storage_year --days 7          # the default: the figures in docs/storage.md

Raw readings of tunnel compartment c001 (8 devices) and the station (17 devices) at their profile cadences
are backfilled day by day into a private influxd at full speed; after each day the rollup tiers are
computed from that raw data by the pipeline's own rollup code (``Rollups.backfill``). Once influxd has
compacted, it reports for each tier the stored field values (``count(*)``), the TSM bytes on disk and
bytes per value (``[storage] raw_bytes_per_value`` and each tier's ``bytes_per_value`` hold these), then
times a dashboard panel over the whole span read from raw and from each rollup tier, side by side.
The raw tier is kept for the whole span here (retention INF) so that raw can be timed over it too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citytelemetry.config import InfluxSettings, Settings, StorageSettings
from citytelemetry.dashboards import influxql as q
from citytelemetry.dashboards.macros import TimeRange, interpolate
from citytelemetry.profiles import Catalog, RegisteredDevice, load_catalog
from citytelemetry.profiles.models import Measurement, System, ValueType
from citytelemetry.records import FieldValue
from citytelemetry.services import ManagedService, definitions, free_port
from citytelemetry.sink.line_protocol import format_line
from citytelemetry.storage.build import build_rollups
from citytelemetry.storage.retention import apply_v1

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = Path(__file__).resolve().parent / "storage_templates"
DAY_MS = 86_400_000
DB = "bench_storage"
BATCH = 20_000


def bench_devices(catalog: Catalog) -> list[RegisteredDevice]:
    """Tunnel compartment c001 (one fire compartment / drainage section) and every station device."""
    return sorted((d for d in catalog.devices.values()
                   if d.system is System.STATION or d.location.get("compartment") == "c001"), key=lambda d: d.id)


class _Signal:
    """A slow mean-reverting wander inside the normal band, at the profile's resolution (cheap: one
    random number per value; simulators/values.py is richer but ~100 µs per reading here)."""

    __slots__ = ("decimals", "hi", "lo", "x")

    def __init__(self, m: Measurement, rng: random.Random) -> None:
        band = m.typical or m.range
        assert band is not None
        self.lo, self.hi = band.min, band.max
        self.x = rng.random()
        self.decimals = 0 if m.value_type is ValueType.INT else 2

    def __call__(self, rng: random.Random) -> float | int:
        self.x = min(1.0, max(0.0, self.x + 0.02 * (0.5 - self.x) + rng.gauss(0, 0.01)))
        value = round(self.lo + self.x * (self.hi - self.lo), self.decimals)
        return int(value) if self.decimals == 0 else float(value)


class _Device:
    def __init__(self, device: RegisteredDevice, rng: random.Random) -> None:
        self.device = device
        self.interval_ms = int(device.profile.reporting_interval_s * 1000)
        self.phase_ms = rng.randrange(self.interval_ms)
        self.seq = 0
        self._numeric = {k: _Signal(m, rng) for k, m in device.profile.measurements.items()
                         if m.value_type in (ValueType.FLOAT, ValueType.INT)}
        self._states = {k: m for k, m in device.profile.measurements.items() if k not in self._numeric}
        self._rng = rng

    def readings(self, start_ms: int, end_ms: int) -> Iterator[bytes]:
        rng, first = self._rng, start_ms + self.phase_ms
        for ts in range(first, end_ms, self.interval_ms):
            fields: dict[str, FieldValue] = {k: signal(rng) for k, signal in self._numeric.items()}
            for k, m in self._states.items():  # mostly the normal state, a change now and then
                if m.value_type is ValueType.BOOL:
                    fields[k] = rng.random() < 0.01
                else:
                    fields[k] = m.values[0] if rng.random() < 0.99 else rng.choice(m.values)
            self.seq += 1
            fields["seq"] = self.seq
            yield format_line(self.device.profile.type, self.device.tags, fields, ts * 1_000_000)


def _post(url: str, path: str, params: dict[str, str], body: bytes | None = None) -> Any:
    address = f"{url}{path}?{urllib.parse.urlencode(params)}"  # our own influxd on loopback
    request = urllib.request.Request(address, data=body, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        return json.load(response) if response.status == 200 else None


def _query(url: str, statement: str) -> list[dict[str, Any]]:
    results = _post(url, "/query", {"db": DB, "q": statement, "epoch": "ms"})["results"]
    if "error" in results[0]:
        raise RuntimeError(f"{statement}: {results[0]['error']}")
    series: list[dict[str, Any]] = results[0].get("series", [])
    return series


def _values_stored(url: str, rp: str) -> int:
    """Every stored field value of the retention policy: count(*) over each of its measurements."""
    total = 0
    for s in _query(url, f'SELECT count(*) FROM "{rp}"./.*/'):  # noqa: S608 - InfluxQL, our own names
        total += sum(v for v in s["values"][0][1:] if v)
    return total


def _tree_bytes(path: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in path.rglob(f"*{suffix}")) if path.exists() else 0


def _settled_sizes(data_dir: Path, rps: list[str], timeout_s: float = 300.0) -> dict[str, int]:
    """TSM bytes per retention policy, once the WAL is empty and the sizes stopped changing."""
    deadline, last, stable_since = time.monotonic() + timeout_s, None, time.monotonic()
    while True:
        sizes = {rp: _tree_bytes(data_dir / "data" / DB / rp, ".tsm") for rp in rps}
        wal = _tree_bytes(data_dir / "wal" / DB, ".wal")
        if sizes != last:
            last, stable_since = sizes, time.monotonic()
        if wal == 0 and time.monotonic() - stable_since >= 15:
            return sizes
        if time.monotonic() > deadline:
            print(f"  (sizes not settled after {timeout_s:.0f} s: WAL {wal} bytes; reporting as they are)")
            return sizes
        time.sleep(1)


@dataclass(frozen=True, slots=True)
class Timing:
    tier: str
    seconds: float
    rows: int


def _panel_queries(catalog: Catalog) -> list[str]:
    """The tunnel gas band (O2: highest, mean, lowest) and the station's CHP electrical output (summed mean)."""
    gas = catalog.profiles["tunnel_multigas"]
    field = next(iter(gas.measurements))
    site = (q.var_match("site"),)
    return [*q.aggregate_band(gas.type, field, site), q.summed_mean("chp_engine", "p_el", site)]


def _time_panel(url: str, texts: list[str], rp: str, time_range: TimeRange, interval: str) -> Timing:
    runs, rows = [], 0
    for _ in range(3):
        started = time.perf_counter()
        rows = 0
        for text in texts:
            statement = interpolate(text, variables={"site": ["hunnan"], "rp": [rp]}, time_range=time_range,
                                    interval=interval)
            rows += sum(len(s["values"]) for s in _query(url, statement))
        runs.append(time.perf_counter() - started)
    return Timing(rp, statistics.median(runs), rows)


async def _rollups_of_day(settings: Settings, catalog: Catalog, start_ms: int, end_ms: int) -> int:
    rollups = build_rollups(settings, catalog)
    written = 0
    try:
        for tier in rollups.tiers:
            for measurement in sorted({d.profile.type for d in bench_devices(catalog)}):
                written += await rollups.backfill(tier, measurement, start_ms, end_ms)
    finally:
        await rollups.aclose()
    return written


def run(days: int, seed: int) -> dict[str, Any]:
    catalog = load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")
    devices = bench_devices(catalog)
    rng = random.Random(seed)
    models = [_Device(d, rng) for d in devices]
    with tempfile.TemporaryDirectory(prefix="ct-bench-storage-") as tmp:
        run_dir = Path(tmp)
        influx = ManagedService(definitions.influxd(run_dir, free_port(), templates=TEMPLATES))
        influx.start()
        try:
            url = influx.url
            settings = Settings(influx=InfluxSettings(url=url, database=DB),
                                storage=StorageSettings(raw_retention="INF"))
            apply_v1(settings.storage, settings.influx)
            end_ms = (time.time_ns() // 1_000_000) // DAY_MS * DAY_MS
            start_ms = end_ms - days * DAY_MS
            raw_points = rollup_points = 0
            write_s = rollup_s = 0.0
            for day in range(days):
                lower = start_ms + day * DAY_MS
                started = time.perf_counter()
                lines = [line for m in models for line in m.readings(lower, lower + DAY_MS)]
                for i in range(0, len(lines), BATCH):
                    _post(url, "/write", {"db": DB, "precision": "ns"}, b"\n".join(lines[i:i + BATCH]))
                raw_points += len(lines)
                write_s += time.perf_counter() - started
                started = time.perf_counter()
                rollup_points += asyncio.run(_rollups_of_day(settings, catalog, lower, lower + DAY_MS))
                rollup_s += time.perf_counter() - started
                if (day + 1) % 7 == 0 or day + 1 == days:
                    print(f"  day {day + 1}/{days}: {raw_points:,} raw points ({raw_points / write_s:,.0f}/s), "
                          f"{rollup_points:,} rollup points ({rollup_s:.0f} s)", flush=True)
            rps = ["autogen", *(t.name for t in settings.storage.tiers)]
            sizes = _settled_sizes(run_dir.resolve() / "influxd" / "data", rps)
            tiers = {}
            for rp in rps:
                stored = _values_stored(url, rp)
                tiers[rp] = {"values": stored, "tsm_bytes": sizes[rp],
                             "bytes_per_value": round(sizes[rp] / stored, 3) if stored else math.nan}
            span = TimeRange(last=None, start_ms=start_ms, end_ms=end_ms)
            interval = f"{max(60, int(span.seconds / 500))}s"  # Grafana: range / max data points (500)
            texts = _panel_queries(catalog)
            timings = [_time_panel(url, texts, rp, span, interval) for rp in rps]
        finally:
            influx.stop()
    panel = [{"tier": t.tier, "seconds": round(t.seconds, 4), "rows": t.rows} for t in timings]
    return {"days": days, "devices": len(devices), "raw_points": raw_points, "rollup_points": rollup_points,
            "write_points_per_s": round(raw_points / write_s), "rollup_seconds": round(rollup_s, 1), "tiers": tiers,
            "panel": {"interval": interval, "timings": panel}}


def _print(result: dict[str, Any]) -> None:
    print(f"\n{result['days']} days, {result['devices']} devices: {result['raw_points']:,} raw points "
          f"(written at {result['write_points_per_s']:,}/s), {result['rollup_points']:,} rollup points "
          f"(computed in {result['rollup_seconds']} s)")
    print(f"{'tier':<11}{'values':>14}{'TSM bytes':>14}{'bytes/value':>12}{'per year':>11}")
    for rp, tier in result["tiers"].items():
        per_year = tier["tsm_bytes"] * 365 / result["days"]
        print(f"{rp:<11}{tier['values']:>14,}{tier['tsm_bytes']:>14,}{tier['bytes_per_value']:>12}"
              f"{per_year / 1e6:>9.1f} MB")
    print(f"panel over the whole span (GROUP BY time({result['panel']['interval']}), 4 statements, median of 3):")
    for t in result["panel"]["timings"]:
        print(f"  {t['tier']:<11}{t['seconds'] * 1000:>9.0f} ms  {t['rows']:>7} rows")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage_year", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    result = run(args.days, args.seed)
    _print(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
