"""The shipped device profiles and inventory, the loader's error reports, and the generators' --check."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from citytelemetry.profiles import Catalog, ProfileError, load_catalog
from citytelemetry.profiles.models import Measurement, System, Threshold, ValueType

ROOT = Path(__file__).resolve().parents[2]
TYPES = ROOT / "device_profiles" / "types"
INVENTORY = ROOT / "device_profiles" / "inventory"
TYPE_FILES = sorted(TYPES.glob("*.yaml"))

# The device catalogue of the domain reference: system and reporting interval of each type.
CATALOGUE = {
    "tunnel_temp_humidity": (System.TUNNEL, 30), "tunnel_multigas": (System.TUNNEL, 10),
    "tunnel_sump": (System.TUNNEL, 10), "tunnel_fan": (System.TUNNEL, 60),
    "tunnel_dts": (System.TUNNEL, 30), "tunnel_fire_detector": (System.TUNNEL, 60),
    "tunnel_access": (System.TUNNEL, 300),
    "chp_engine": (System.STATION, 10), "absorption_chiller": (System.STATION, 60),
    "gas_boiler": (System.STATION, 60), "heat_pump": (System.STATION, 60),
    "electric_chiller": (System.STATION, 60), "thermal_storage": (System.STATION, 300),
    "pv_inverter": (System.STATION, 60), "wind_turbine": (System.STATION, 60),
    "heat_exchange_station": (System.NETWORK, 60), "valve_well": (System.NETWORK, 300),
    "feeder_10kv": (System.NETWORK, 60), "smart_meter": (System.NETWORK, 900),
    "heat_meter": (System.NETWORK, 60),
}
COMPARTMENT_DEVICES = {"tunnel_temp_humidity": 1, "tunnel_multigas": 2, "tunnel_sump": 1, "tunnel_fan": 1,
                       "tunnel_fire_detector": 1, "tunnel_access": 1, "tunnel_dts": 1}
TAG = re.compile(r"\[(std|src|est|calc)\]")


@cache
def shipped() -> Catalog:
    return load_catalog(TYPES, INVENTORY)


# --- the shipped catalogue ---------------------------------------------------------------------------


def test_catalogue_types_have_their_system_and_interval() -> None:
    profiles = shipped().profiles
    assert len(profiles) >= 20
    assert {p.system for p in profiles.values()} == set(System)
    actual = {name: (profiles[name].system, profiles[name].reporting_interval_s) for name in CATALOGUE}
    assert actual == CATALOGUE


@pytest.mark.parametrize("path", TYPE_FILES, ids=lambda p: p.stem)
def test_profile_file_is_named_after_its_type_and_cites_its_sources(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    profile = shipped().profiles[path.stem]
    assert profile.type == path.stem
    assert text.startswith("# ")
    assert 3 <= len(profile.measurements) <= 10


def test_tunnel_has_160_compartments_each_fully_equipped() -> None:
    tunnel = shipped().devices_of(System.TUNNEL)
    by_compartment: dict[str, Counter[str]] = {}
    km: dict[str, set[str]] = {}
    for device in tunnel:
        compartment = device.location["compartment"]
        by_compartment.setdefault(compartment, Counter())[device.profile.type] += 1
        km.setdefault(compartment, set()).add(device.location["km"])
        assert device.location["cabin"] == "power"
    assert sorted(by_compartment) == [f"c{n:03d}" for n in range(1, 161)]
    assert all(counts == COMPARTMENT_DEVICES for counts in by_compartment.values())
    assert km["c001"] == {"0.0"}
    assert km["c002"] == {"0.2"}
    assert km["c160"] == {"31.8"}
    assert len(tunnel) == 160 * 8


def test_station_has_the_plant_of_the_eco_park() -> None:
    station = shipped().devices_of(System.STATION)
    assert Counter(d.profile.type for d in station) == {
        "chp_engine": 2, "absorption_chiller": 2, "gas_boiler": 2, "heat_pump": 2, "electric_chiller": 2,
        "thermal_storage": 1, "pv_inverter": 4, "wind_turbine": 2,
    }
    units = [d.location["unit"] for d in station]
    assert len(set(units)) == len(units)


def test_network_has_at_least_200_nodes_that_refer_to_existing_feeders_and_stations() -> None:
    network = shipped().devices_of(System.NETWORK)
    nodes = {d.location["node"] for d in network}
    assert len(nodes) >= 200
    assert Counter(d.profile.type for d in network) == {
        "heat_exchange_station": 40, "smart_meter": 120, "heat_meter": 120, "valve_well": 48, "feeder_10kv": 12,
    }
    feeders = {d.location["feeder"] for d in network if d.profile.type == "feeder_10kv"}
    stations = {d.location["node"] for d in network if d.profile.type == "heat_exchange_station"}
    assert {d.location["feeder"] for d in network if d.profile.type == "smart_meter"} == feeders
    assert {d.location["zone"] for d in network if d.profile.type == "heat_meter"} == stations


# --- thresholds make physical sense ------------------------------------------------------------------


def _first_level(threshold: Threshold | None) -> float | None:
    """The level crossed first on that side: the warning if there is one, else the critical."""
    if threshold is None:
        return None
    return threshold.warning if threshold.warning is not None else threshold.critical


def band_violations(key: str, m: Measurement) -> list[str]:
    """Why ``m``'s typical band or levels make no sense; empty when normal operation never alerts."""
    if m.range is None or m.thresholds is None:
        return []
    low, high = m.thresholds.low, m.thresholds.high
    levels = [v for t in (low, high) if t for v in (t.warning, t.critical) if v is not None]
    problems = [f"{key}: level {v:g} not strictly inside the range"
                for v in levels if not m.range.min < v < m.range.max]
    low_level, high_level = _first_level(low), _first_level(high)
    if m.typical is not None and low_level is not None and not low_level < m.typical.min:
        problems.append(f"{key}: typical min {m.typical.min:g} not above the low level {low_level:g}")
    if m.typical is not None and high_level is not None and not m.typical.max < high_level:
        problems.append(f"{key}: typical max {m.typical.max:g} not below the high level {high_level:g}")
    if low is not None and high is not None and not max(v for v in (low.warning, low.critical) if v is not None) \
            < min(v for v in (high.warning, high.critical) if v is not None):
        problems.append(f"{key}: low levels overlap high levels")
    return problems


def test_band_check_catches_a_level_on_the_range_edge() -> None:
    m = Measurement.model_validate({
        "description": "humidity", "value_type": "float", "range": {"min": 0, "max": 100},
        "typical": {"min": 50, "max": 85},
        "thresholds": {"high": {"warning": 90, "critical": 100, "source": "x [est]"}},
    })
    assert band_violations("humidity", m) == ["humidity: level 100 not strictly inside the range"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"typical": {"min": 50, "max": 90}}, "typical.max 90.0 is at or above the high level 90.0: normal would alarm"),
    ({"thresholds": {"high": {"warning": 90, "critical": 120, "source": "x [est]"}}},
     "thresholds.high.critical 120.0 lies outside the range [0.0, 100.0]: it could never fire"),
    ({"thresholds": {"low": {"warning": 95, "source": "x [est]"}, "high": {"warning": 90, "source": "x [est]"}}},
     "low levels (95.0) must lie below high levels (90.0)"),
    ({"range": {"min": 0, "max": True}}, "range.max"),
    ({"range": {"min": float("nan"), "max": 100}}, "range.min"),
    ({"monotonic": True, "value_type": "bool", "range": None, "typical": None, "thresholds": None},
     "monotonic applies to numeric counters only"),
])
def test_the_model_refuses_inconsistent_levels(changes: dict[str, object], message: str) -> None:
    data: dict[str, object] = {
        "description": "humidity", "value_type": "float", "range": {"min": 0, "max": 100},
        "typical": {"min": 50, "max": 85},
        "thresholds": {"high": {"warning": 90, "critical": 95, "source": "x [est]"}},
    }
    data.update(changes)
    with pytest.raises(ValidationError, match=re.escape(message)):
        Measurement.model_validate({k: v for k, v in data.items() if v is not None})


def test_a_state_cannot_be_both_warning_and_critical() -> None:
    with pytest.raises(ValidationError, match=re.escape("states both warning and critical: ['fire']")):
        Measurement.model_validate({"description": "detector", "value_type": "enum",
                                    "values": ["normal", "fire"], "warning_values": ["fire"],
                                    "critical_values": ["fire"]})


@pytest.mark.parametrize("path", TYPE_FILES, ids=lambda p: p.stem)
def test_normal_operation_stays_between_the_warning_levels(path: Path) -> None:
    profile = shipped().profiles[path.stem]
    problems = [p for key, m in profile.measurements.items() for p in band_violations(key, m)]
    assert problems == []


@pytest.mark.parametrize("path", TYPE_FILES, ids=lambda p: p.stem)
def test_every_figure_says_where_it_comes_from(path: Path) -> None:
    profile = shipped().profiles[path.stem]
    thresholds = [t for m in profile.measurements.values() if m.thresholds
                  for t in (m.thresholds.low, m.thresholds.high) if t]
    untagged = [t.source for t in thresholds if not TAG.search(t.source)]
    untagged += [m.source for m in profile.measurements.values()
                 if m.source and not TAG.search(m.source)]
    assert untagged == []


@pytest.mark.parametrize("path", TYPE_FILES, ids=lambda p: p.stem)
def test_numbers_have_a_typical_band_and_enums_start_with_a_normal_state(path: Path) -> None:
    problems = []
    for key, m in shipped().profiles[path.stem].measurements.items():
        if m.monotonic and (m.value_type not in (ValueType.FLOAT, ValueType.INT) or m.thresholds):
            problems.append(f"{key}: a cumulative register is a number without alarm levels")
        elif m.value_type in (ValueType.FLOAT, ValueType.INT) and not m.monotonic and m.typical is None:
            problems.append(f"{key}: no typical band for the simulator")
        if m.values and m.values[0] in (*m.warning_values, *m.critical_values):
            problems.append(f"{key}: first state '{m.values[0]}' is not a normal state")
    assert problems == []


# --- broken files are reported by file and key, and never half-load --------------------------------


@pytest.fixture
def district(tmp_path: Path) -> Path:
    """A private copy of ``device_profiles/`` that a test may break."""
    shutil.copytree(TYPES, tmp_path / "types")
    shutil.copytree(INVENTORY, tmp_path / "inventory")
    return tmp_path


def _edit(path: Path, change: Callable[[Any], object]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _problems(district: Path) -> list[str]:
    with pytest.raises(ProfileError) as caught:
        load_catalog(district / "types", district / "inventory")
    assert str(len(caught.value.problems)) in str(caught.value)
    return caught.value.problems


def _o2(data: Any) -> Any:
    return data["measurements"]["o2"]


GAS = "types/tunnel_multigas.yaml"
BROKEN: list[tuple[str, str, Callable[[Any], object], str, str]] = [
    ("wrong-type", GAS, lambda d: _o2(d)["range"].update(min="low"),
     "measurements.o2.range.min", "valid number"),
    ("unknown-value-type", GAS, lambda d: _o2(d).update(value_type="decimal"),
     "measurements.o2.value_type", "'float', 'int', 'bool' or 'enum'"),
    ("missing-range", GAS, lambda d: _o2(d).pop("range"),
     "measurements.o2", "numeric measurements need a physical range"),
    ("typical-outside-range", GAS, lambda d: _o2(d)["typical"].update(max=30),
     "measurements.o2", "typical band must lie inside the physical range"),
    ("range-reversed", GAS, lambda d: _o2(d).update(range={"min": 25, "max": 0}),
     "measurements.o2.range", "min 25.0 is above max 0.0"),
    ("levels-reversed", GAS, lambda d: _o2(d)["thresholds"]["low"].update(critical=20),
     "measurements.o2.thresholds", "low.critical must be at or below low.warning"),
    ("typo-key", GAS, lambda d: _o2(d).update(thresholds_=None),
     "measurements.o2.thresholds_", "Extra inputs are not permitted"),
    ("enum-state-unknown", GAS, lambda d: d["measurements"]["sensor_state"].update(warning_values=["smoke"]),
     "measurements.sensor_state", "warning/critical values not among values: ['smoke']"),
    ("bad-field-key", GAS, lambda d: d["measurements"].update({"O2-level": _o2(d)}),
     "measurements.O2-level.[key]", "should match pattern"),
    ("unknown-device-type", "inventory/station.yaml", lambda d: d["devices"][0].update(type="steam_turbine"),
     "devices.0.type", "unknown device type 'steam_turbine'"),
    ("device-of-other-system", "inventory/station.yaml", lambda d: d["devices"][0].update(type="tunnel_fan"),
     "devices.0.type", "'tunnel_fan' belongs to system 'tunnel', not 'station'"),
    ("duplicate-device-id", "inventory/station.yaml", lambda d: d["devices"][1].update(id="stn-chp1"),
     "devices.1.id", "duplicate device id 'stn-chp1'"),
    ("bad-device-id", "inventory/station.yaml", lambda d: d["devices"][0].update(id="Stn CHP1"),
     "devices.0.id", "should match pattern"),
    ("location-key-not-allowed", "inventory/station.yaml", lambda d: d["devices"][0]["location"].update(floor="b1"),
     "devices.0.location.floor.[key]", "Input should be 'cabin'"),
    ("location-value-not-text", "inventory/tunnel.yaml", lambda d: d["devices"][0]["location"].update(km=0.0),
     "devices.0.location.km", "valid string"),
    ("site-missing", "inventory/station.yaml", lambda d: d.pop("site"), "site", "Field required"),
]


@pytest.mark.parametrize(("relative", "change", "key", "message"),
                         [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_a_broken_file_is_reported_by_file_and_key(district: Path, relative: str,
                                                   change: Callable[[Any], object], key: str,
                                                   message: str) -> None:
    path = district / relative
    _edit(path, change)
    own = [p for p in _problems(district) if p.startswith(f"{path}: ")]
    assert len(own) == 1, own
    assert own[0].startswith(f"{path}: {key}: ")
    assert message in own[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("type: [tunnel_fan\nsystem: tunnel\n", "cannot read: while parsing a flow sequence"),
    ("", "file is empty"),
    ("# only a comment\n", "file is empty"),
], ids=["yaml-syntax", "empty", "comment-only"])
def test_an_unreadable_file_is_reported_by_file(district: Path, text: str, expected: str) -> None:
    path = district / "types" / "tunnel_fan.yaml"
    path.write_text(text, encoding="utf-8")
    problems = _problems(district)
    assert problems[0].startswith(f"{path}: {expected}")
    # The fans of the inventory now have no profile: one line says so, none is loaded.
    inventory = district / "inventory" / "tunnel.yaml"
    assert problems[1:] == [f"{inventory}: devices of type 'tunnel_fan' not checked: its profile is invalid"]


def test_one_bad_inventory_file_among_good_ones_loads_nothing(district: Path) -> None:
    path = district / "inventory" / "network.yaml"
    _edit(path, lambda d: d["devices"][-1].update(type="gas_meter"))
    assert _problems(district) == [f"{path}: devices.339.type: unknown device type 'gas_meter'"]


def test_every_broken_file_is_listed_at_once(district: Path) -> None:
    gas, station = district / GAS, district / "inventory" / "station.yaml"
    _edit(gas, lambda d: _o2(d).pop("range"))
    _edit(station, lambda d: d["devices"][1].update(id="stn-chp1"))
    problems = _problems(district)
    # The 320 gas detectors of the inventory lose their profile: one line for all of them.
    assert Counter(p.split(": ")[0] for p in problems) == {
        str(gas): 1, str(district / "inventory" / "tunnel.yaml"): 1, str(station): 1,
    }


def test_duplicate_yaml_keys_are_refused(district: Path) -> None:
    path = district / GAS
    path.write_text(path.read_text(encoding="utf-8") + "description: again\n", encoding="utf-8")
    problems = _problems(district)
    assert problems[0].startswith(f"{path}: cannot read: ")
    assert "duplicate key 'description'" in problems[0]


def test_file_name_must_match_the_type(district: Path) -> None:
    path = district / GAS
    path.rename(path.with_name("gas.yaml"))
    problems = _problems(district)
    assert problems[0] == f"{path.with_name('gas.yaml')}: type: 'tunnel_multigas' must match the file name 'gas'"


# --- generators: the committed files are what the scripts produce ------------------------------------


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["generate_inventory", "generate_profile_docs"])
def test_committed_files_match_the_generator(name: str) -> None:
    result = subprocess.run([sys.executable, f"scripts/{name}.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, check=False, timeout=120)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(("name", "stale", "extra"), [
    ("generate_inventory", "station.yaml", "old.yaml"),
    ("generate_profile_docs", "tunnel_fan.md", "old_type.md"),
])
def test_check_names_stale_missing_and_extra_files(tmp_path: Path, name: str, stale: str, extra: str) -> None:
    script = _script(name)
    assert script.render() == script.render()
    script.write(tmp_path)
    assert script.check(tmp_path) == []
    (tmp_path / stale).write_text("edited by hand\n", encoding="utf-8")
    missing = min(tmp_path.iterdir())
    missing.unlink()
    (tmp_path / extra).write_text("left over\n", encoding="utf-8")
    assert sorted(script.check(tmp_path)) == sorted([
        f"{missing}: missing",
        f"{tmp_path / stale}: differs from the generator's output",
        f"{tmp_path / extra}: not produced by the generator",
    ])


def test_a_missing_profile_directory_is_one_root_cause_not_one_line_per_device(district: Path) -> None:
    missing = district / "no-such-types"
    with pytest.raises(ProfileError) as caught:
        load_catalog(missing, district / "inventory")
    assert caught.value.problems == [
        f"{missing}: not a directory",
        f"{district / 'inventory'}: devices not checked against profiles: none loaded from {missing}",
    ]


def test_many_devices_of_an_unknown_type_are_one_line(district: Path) -> None:
    path = district / "inventory" / "network.yaml"
    _edit(path, lambda d: [device.update(type="gas_meter") for device in d["devices"][-5:]])
    assert _problems(district) == [
        f"{path}: devices.335.type: unknown device type 'gas_meter' (and 4 more devices of this type)"]
