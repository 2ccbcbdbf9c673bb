"""Pure logic of the storage package: rollup schema and points, dirty windows, the plan, the tiers' DDL."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from citytelemetry.cli.main import main
from citytelemetry.cli.storage import parse_time
from citytelemetry.config import ConfigError, InfluxSettings, RollupTier, StorageSettings, load_settings
from citytelemetry.dashboards.influxql import TIER_VARIABLE
from citytelemetry.records import Reading
from citytelemetry.storage.plan import storage_plan
from citytelemetry.storage.query import Series
from citytelemetry.storage.retention import (
    META_RP,
    TIERS_MEASUREMENT,
    influx2_commands,
    range_choices,
    statements,
    tier_lines,
)
from citytelemetry.storage.rollup import rollup_lines, window_statement
from citytelemetry.storage.schema import Aggregate, rollup_schema
from citytelemetry.storage.tiers import rollup_tiers, tiers_by_device
from citytelemetry.storage.windows import ALL_DEVICES, DirtyWindows, Mark

from .catalog_fixture import make_catalog

GAS = "tunnel_multigas"
DEVICE = "tun-c001-gas1"
MINUTE, FIVE, HOUR = 60_000, 300_000, 3_600_000


def _windows() -> DirtyWindows:
    catalog = make_catalog()
    return DirtyWindows(tiers_by_device(StorageSettings(), catalog), catalog.profiles)


def _reading(ts_ms: int, measurement: str = GAS) -> Reading:
    return Reading(measurement, DEVICE, (), {"o2": 20.9}, ts_ms, 1)


def test_schema_gives_numbers_five_aggregates_and_states_two() -> None:
    rollup = rollup_schema(make_catalog())[GAS]
    assert [(f.name, f.aggregates) for f in rollup.fields] == [
        ("o2", tuple(Aggregate)), ("ch4", tuple(Aggregate)), ("alarms", tuple(Aggregate)),
        ("heater_on", (Aggregate.LAST, Aggregate.COUNT)), ("mode", (Aggregate.LAST, Aggregate.COUNT)),
        ("seq", tuple(Aggregate))]
    assert rollup.select_list().startswith('min("o2"), max("o2"), mean("o2"), last("o2"), count("o2"), min("ch4")')


def test_window_statement_groups_by_window_and_every_tag() -> None:
    rollup = rollup_schema(make_catalog())[GAS]
    tier = rollup_tiers(StorageSettings())[0]
    text = window_statement(rollup, tier, 300_000, 600_000, ("a", "b"), raw_rp="autogen")
    assert text.endswith('FROM "autogen"."tunnel_multigas" WHERE time >= 300000ms AND time < 600000ms '
                         """AND ("device" = 'a' OR "device" = 'b') GROUP BY time(5m), * fill(none)""")


def test_rollup_lines_type_each_value_by_the_profile_not_by_the_json() -> None:
    rollup = rollup_schema(make_catalog())[GAS]
    # InfluxQL's JSON writes the float 20.0 as 20 and the mean 5.0 of an int field as 5.
    values = {"o2": [19, 21, 20, 21, 3], "ch4": [None] * 5, "alarms": [2, 8, 5, 8, 2],
              "heater_on": [True, 2], "mode": ["fault", 2], "seq": [1, 2, 1.5, 2, 2]}
    row = [120_000, *(v for f in rollup.fields for v in values[f.name])]
    columns = ["time", *(f"{a}_{f.name}" for f, a in rollup.columns())]
    lines = rollup_lines(rollup, [Series(GAS, {"device": DEVICE, "site": "hunnan", "zone": ""}, columns, [row])])
    assert sorted(lines) == sorted([
        b"tunnel_multigas_min,device=tun-c001-gas1,site=hunnan o2=19.0,alarms=2i,seq=1i 120000000000",
        b"tunnel_multigas_max,device=tun-c001-gas1,site=hunnan o2=21.0,alarms=8i,seq=2i 120000000000",
        b"tunnel_multigas_mean,device=tun-c001-gas1,site=hunnan o2=20.0,alarms=5.0,seq=1.5 120000000000",
        (b'tunnel_multigas_last,device=tun-c001-gas1,site=hunnan o2=21.0,alarms=8i,heater_on=true,mode="fault",'
        b"seq=2i 120000000000"),
        (b"tunnel_multigas_count,device=tun-c001-gas1,site=hunnan o2=3i,alarms=2i,heater_on=2i,mode=2i,seq=2i "
        b"120000000000"),
    ])


def test_a_reading_marks_its_window_in_every_tier_and_late_ones_are_due_at_once() -> None:
    windows = _windows()
    now = 10 * HOUR + 30 * MINUTE + 5_000  # 10:30:05
    windows.observe([_reading(now - 1_000), _reading(now - 2_000), _reading(3 * HOUR + 7), _reading(now, "ct_x")])
    assert windows.take_due(now, grace_ms=0) == []  # not committed: the lines may not be in the sink yet
    windows.commit()
    assert len(windows) == 4  # two windows per tier; the unknown measurement is skipped
    assert sorted(windows.take_due(now, grace_ms=30_000)) == [
        Mark("rollup_1h", GAS, DEVICE, 3 * HOUR), Mark("rollup_5m", GAS, DEVICE, 3 * HOUR)]
    assert windows.take_due(now + FIVE, grace_ms=30_000) == []  # 10:30 closes at 10:35, due at 10:35:30
    assert windows.take_due(now + FIVE + 25_000, grace_ms=30_000) == [Mark("rollup_5m", GAS, DEVICE, now - 5_000)]
    assert len(windows) == 1  # the hour is still open


def test_a_window_computed_is_marked_again_by_its_next_late_reading() -> None:
    windows = _windows()
    now = 10 * HOUR + 30 * MINUTE  # 10:30:00
    windows.observe([_reading(3 * HOUR + 7)])
    windows.observe([_reading(3 * HOUR + 9)])  # same windows: nothing new to mark
    windows.commit()
    assert sorted(windows.take_due(now, grace_ms=0)) == [
        Mark("rollup_1h", GAS, DEVICE, 3 * HOUR), Mark("rollup_5m", GAS, DEVICE, 3 * HOUR)]
    windows.observe([_reading(3 * HOUR + 11)])  # a late one after the computation: both windows again
    windows.commit()
    assert sorted(windows.take_due(now, grace_ms=0)) == [
        Mark("rollup_1h", GAS, DEVICE, 3 * HOUR), Mark("rollup_5m", GAS, DEVICE, 3 * HOUR)]
    windows.observe([_reading(3 * HOUR + FIVE)])  # the next 5-minute window, the same hour
    windows.commit()
    assert sorted(windows.take_due(now, grace_ms=0)) == [
        Mark("rollup_1h", GAS, DEVICE, 3 * HOUR), Mark("rollup_5m", GAS, DEVICE, 3 * HOUR + FIVE)]


def test_marks_survive_a_checkpoint_and_failed_ones_come_back(tmp_path: Path) -> None:
    path = tmp_path / "run" / "windows.json"
    windows = _windows()
    windows.observe([_reading(5 * MINUTE + 1)])
    windows.commit()
    due = windows.take_due(10 * HOUR, grace_ms=0)
    windows.restore(due)
    windows.save(path)
    assert json.loads(path.read_text())["version"] == 1
    again = _windows()
    assert again.load(path) == 2
    assert sorted(again.take_due(10 * HOUR, grace_ms=0)) == sorted(due)
    assert _windows().load(tmp_path / "missing.json") == 0


def test_a_restart_recomputes_the_last_windows_of_every_device() -> None:
    windows = _windows()
    windows.mark_recent(2 * HOUR + 390_000, 2)
    assert sorted(windows.take_due(10 * HOUR, 0)) == [
        Mark("rollup_1h", GAS, ALL_DEVICES, HOUR), Mark("rollup_1h", GAS, ALL_DEVICES, 2 * HOUR),
        Mark("rollup_5m", GAS, ALL_DEVICES, 2 * HOUR), Mark("rollup_5m", GAS, ALL_DEVICES, 2 * HOUR + FIVE)]


def test_plan_counts_points_and_values_per_tier_from_the_cadence() -> None:
    catalog = make_catalog()
    raw, five, hour = storage_plan(StorageSettings(), catalog, rollup_schema(catalog))
    assert raw.total_points_per_day == 8640  # every 10 s
    assert raw.total_values_per_day == 8640 * 6  # five fields and seq
    assert five.total_points_per_day == 288 * 5  # one point per aggregate measurement per window
    assert five.total_values_per_day == 288 * (4 * 5 + 2 * 2)
    assert hour.total_values_per_day == 24 * 24
    assert raw.bytes_per_year == pytest.approx(8640 * 6 * 365 * StorageSettings().raw_bytes_per_value)
    assert raw.bytes_held == pytest.approx(8640 * 6 * 90 * StorageSettings().raw_bytes_per_value)
    assert math.isinf(hour.bytes_held)


def test_a_system_can_keep_fewer_tiers() -> None:
    catalog = make_catalog()
    settings = StorageSettings(systems={"tunnel": ("rollup_1h",)})
    _, five, hour = storage_plan(settings, catalog, rollup_schema(catalog))
    assert five.total_points_per_day == 0
    assert hour.total_points_per_day == 24 * 5


def test_storage_settings_refuse_unknown_tiers(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[storage.systems]\nnetwork = ["rollup_1d"]\n')
    with pytest.raises(ConfigError, match="unknown tiers"):
        load_settings(config)


def test_retention_statements_create_or_alter_only_what_differs() -> None:
    influx = InfluxSettings(database="ct")
    storage = StorageSettings()
    assert statements(storage, influx) == [
        'CREATE DATABASE "ct"',
        'CREATE RETENTION POLICY "autogen" ON "ct" DURATION 90d REPLICATION 1',
        'CREATE RETENTION POLICY "rollup_5m" ON "ct" DURATION 730d REPLICATION 1',
        'CREATE RETENTION POLICY "rollup_1h" ON "ct" DURATION INF REPLICATION 1',
        'CREATE RETENTION POLICY "ct_meta" ON "ct" DURATION INF REPLICATION 1']
    shown = {"autogen": "0s", "rollup_5m": "17520h0m0s", "rollup_1h": "0s", "ct_meta": "0s"}
    assert statements(storage, influx, shown) == ['ALTER RETENTION POLICY "autogen" ON "ct" DURATION 90d']


def test_dashboards_read_the_tier_of_the_range() -> None:
    storage = StorageSettings(tiers=(RollupTier(name="r1h", window="1h", retention="INF", use_above="30d"),))
    choices = range_choices(storage, InfluxSettings(retention_policy="raw"))
    assert [(c.rp, c.min_range_ms, c.max_range_ms) for c in choices] == [
        ("raw", 0, 30 * 86_400_000), ("r1h", 30 * 86_400_000, 10**15)]
    assert tier_lines(storage, InfluxSettings())[1] == (
        'ct_storage_tiers,tier=r1h rp="r1h",min_range_ms=2592000000i,max_range_ms=1000000000000000i 0')
    commands = influx2_commands(storage, InfluxSettings(bucket="city", org="district"))
    assert "influx bucket create --name city_r1h --retention 0 --org district" in commands


def test_the_dashboards_tier_variable_reads_what_apply_writes() -> None:
    assert f'FROM "{META_RP}"."{TIERS_MEASUREMENT}"' in TIER_VARIABLE


def test_export_times_parse_as_utc() -> None:
    assert parse_time("2026-01-31") == 1_769_817_600_000
    assert parse_time("2026-01-31T12:00:00+08:00") == 1_769_817_600_000 + 4 * HOUR
    assert abs(parse_time("now-7d") - (parse_time("now") - 7 * 86_400_000)) < 1000


def test_a_broken_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "windows.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a rollup checkpoint"):
        _windows().load(path)


def test_many_devices_marked_in_one_window_collapse_into_one_mark() -> None:
    windows = _windows()
    many = [Mark("rollup_5m", GAS, f"dev-{i}", FIVE) for i in range(150)]
    windows.restore([*many, Mark("rollup_5m", GAS, DEVICE, 2 * FIVE)])
    assert sorted(windows.take_due(HOUR, 0)) == [Mark("rollup_5m", GAS, ALL_DEVICES, FIVE),
                                                  Mark("rollup_5m", GAS, DEVICE, 2 * FIVE)]


def test_storage_plan_and_script_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["storage", "plan"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("1637 devices; disk = stored values x measured bytes per value (raw 4.3, rollup_5m 4.4")
    assert out[2].split()[:3] == ["raw", "-", "90d"]
    assert out[2].split()[6] == "5,886,432"  # points/day: 1637 devices at their profile cadences
    assert '  CREATE RETENTION POLICY "rollup_5m" ON "citytelemetry" DURATION 730d REPLICATION 1' in out
    assert main(["storage", "script"]) == 0
    script = capsys.readouterr().out.splitlines()
    assert script[0] == 'CREATE DATABASE "citytelemetry";'
    assert script[-1] == ('-- ct_storage_tiers,tier=rollup_1h rp="rollup_1h",min_range_ms=5184000000i,'
                          'max_range_ms=1000000000000000i 0')


def test_a_device_added_by_reload_rolls_up_into_every_tier() -> None:
    windows = _windows()
    windows.observe([Reading(GAS, "tun-c999-gas1", (), {"o2": 20.9}, FIVE + 1, 1)])
    windows.commit()
    assert sorted(windows.take_due(HOUR + FIVE, 0)) == [Mark("rollup_1h", GAS, "tun-c999-gas1", 0),
                                                         Mark("rollup_5m", GAS, "tun-c999-gas1", FIVE)]
