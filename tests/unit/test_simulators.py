"""The district simulator without a broker: determinism, realistic values, sequence numbers, and
faults that are wrong in exactly the stated way -- cross-checked against the pipeline's own validator."""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from simulators import (
    DistrictSimulator,
    FaultPlanError,
    FaultRecord,
    Pacing,
    SimMessage,
    parse_fault_counts,
    select_devices,
)
from simulators.faults import FAULT_REASONS, LEVELS, Level
from simulators.values import DeviceModel, normal_band

from citytelemetry.contracts import InboundMessage
from citytelemetry.profiles import Catalog, load_catalog
from citytelemetry.profiles.models import DeviceProfile, ValueType
from citytelemetry.records import Reason
from citytelemetry.testing import NeverSettled
from citytelemetry.validate import Limits, MessageValidator

START = 1_780_000_000_000  # 2026-05-28 20:26:40 UTC
REPO = Path(__file__).resolve().parents[2]
SRC = "test: fixture"


def _num(description: str, unit: str, lo: float, hi: float, typ: tuple[float, float] | None = None,
         value_type: str = "float", **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"description": description, "value_type": value_type, "unit": unit,
                         "range": {"min": lo, "max": hi}, **extra}
    if typ is not None:
        m["typical"] = {"min": typ[0], "max": typ[1]}
    return m


def _enum(description: str, values: list[str], **extra: Any) -> dict[str, Any]:
    return {"description": description, "value_type": "enum", "values": values, **extra}


PROFILES: dict[str, dict[str, Any]] = {
    "chp_engine": {
        "system": "station", "description": "gas engine CHP", "reporting_interval_s": 10,
        "measurements": {
            "state": _enum("engine state", ["running", "stopped", "fault"], critical_values=["fault"]),
            "p_el": _num("electrical power", "kW", 0, 1320, (600, 1200)),
            "gas_flow": _num("gas flow", "Nm³/h", 0, 400, (150, 320)),
            "q_heat": _num("heat recovered", "kW", 0, 1800, (600, 1350)),
            "rpm": _num("speed", "rpm", 0, 1800, (1490, 1510), "int",
                        thresholds={"high": {"warning": 1575, "critical": 1650, "source": SRC}}),
            "running": {"description": "engine running", "value_type": "bool"},
        },
    },
    "heat_pump": {
        "system": "station", "description": "water-source heat pump", "reporting_interval_s": 60,
        "measurements": {
            "q_heat": _num("heating power", "kW", 0, 2500, (500, 2000)),
            "p_el": _num("electric power", "kW", 0, 900, (150, 650)),
            "cop": _num("coefficient of performance", "", 0, 8, (2.8, 4.5)),
        },
    },
    "pv_inverter": {
        "system": "station", "description": "PV inverter", "reporting_interval_s": 60,
        "measurements": {
            "p_ac": _num("AC power", "kW", 0, 275, (0, 250)),
            "irradiance": _num("plane-of-array irradiance", "W/m²", 0, 1400, (0, 1100)),
            "energy": _num("AC energy", "kWh", 0, 1e9, monotonic=True),
        },
    },
    "smart_meter": {
        "system": "network", "description": "electricity meter", "reporting_interval_s": 60,
        "measurements": {
            "energy": _num("active energy", "kWh", 0, 1e8, monotonic=True),
            "pulses": _num("pulse count", "", 0, 1e9, value_type="int", monotonic=True),
            "power": _num("active power", "kW", 0, 25, (0, 8)),
        },
    },
    "tunnel_multigas": {
        "system": "tunnel", "description": "multi-gas detector", "reporting_interval_s": 10,
        "measurements": {
            "o2": _num("oxygen", "%vol", 0, 25, (20.5, 21.2), thresholds={
                "low": {"warning": 19.5, "critical": 18, "source": SRC},
                "high": {"warning": 22, "critical": 23.5, "source": SRC}}),
            "alarms": _num("alarm count", "", 0, 100, (0, 3), "int"),
            "sensor_state": _enum("sensor state", ["ok", "calibrating", "fault"], warning_values=["fault"]),
        },
    },
    "tunnel_fire_detector": {
        "system": "tunnel", "description": "fire detector", "reporting_interval_s": 60,
        "measurements": {"state": _enum("alarm state", ["normal", "pre_alarm", "fire"],
                                        warning_values=["pre_alarm"], critical_values=["fire"])},
    },
}
INVENTORY = {
    "tunnel": ["tun-gas1", "tun-gas2", "tun-fire1"],
    "station": ["stn-chp1", "stn-hp1", "stn-pv1"],
    "network": ["net-em1"],
}
TYPE_OF = {"tun-gas1": "tunnel_multigas", "tun-gas2": "tunnel_multigas", "tun-fire1": "tunnel_fire_detector",
           "stn-chp1": "chp_engine", "stn-hp1": "heat_pump", "stn-pv1": "pv_inverter", "net-em1": "smart_meter"}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    root = tmp_path_factory.mktemp("profiles")
    (root / "types").mkdir()
    (root / "inventory").mkdir()
    for name, body in PROFILES.items():
        (root / "types" / f"{name}.yaml").write_text(yaml.safe_dump({"type": name, **body}), encoding="utf-8")
    for system, ids in INVENTORY.items():
        devices = [{"id": i, "type": TYPE_OF[i], "location": {"unit": i[-1]}} for i in ids]
        (root / "inventory" / f"{system}.yaml").write_text(
            yaml.safe_dump({"site": "testsite", "system": system, "devices": devices}), encoding="utf-8")
    return load_catalog(root / "types", root / "inventory")


def series(profile: DeviceProfile, *, hours: float, step_s: int, start: int = START,
           device: str = "dev-1", seed: int = 7) -> list[dict[str, Any]]:
    model = DeviceModel(profile, seed, device)
    return [model.sample(start + k * step_s * 1000) for k in range(int(hours * 3600 / step_s))]


def body_of(message: SimMessage) -> Any:
    return json.loads(message.payload)


def readings_of(message: SimMessage) -> list[dict[str, Any]]:
    body = body_of(message)
    return body.get("readings", [body])


def topic_device(topic: str) -> str:
    return topic.split("/")[-2]


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(catalog: Catalog) -> None:
    def run(seed: int) -> list[tuple[str, bytes]]:
        sim = DistrictSimulator(catalog, seed=seed, start_ms=START, duration_s=600, faults={"all": 1})
        return [(m.topic, m.payload) for m in sim.messages()]

    first = run(1)
    assert first == run(1)
    assert first != run(2)
    sim = DistrictSimulator(catalog, seed=1, start_ms=START, duration_s=600, faults={"all": 1})
    assert [(m.topic, m.payload) for m in sim.messages()] == [(m.topic, m.payload) for m in sim.messages()]


def test_a_device_keeps_its_values_whatever_else_runs(catalog: Catalog) -> None:
    alone = DistrictSimulator(catalog, seed=3, start_ms=START, duration_s=300, systems=["station"])
    everything = DistrictSimulator(catalog, seed=3, start_ms=START, duration_s=300)
    pick = "stn-chp1"
    assert [m.payload for m in alone.messages() if m.device_id == pick] == \
        [m.payload for m in everything.messages() if m.device_id == pick]


# --- values ---------------------------------------------------------------------------------


def check_types_and_bands(profile: DeviceProfile, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert list(row) == list(profile.measurements)
        for key, value in row.items():
            m = profile.measurements[key]
            if m.value_type is ValueType.FLOAT:
                assert type(value) is float, (profile.type, key, value)
            elif m.value_type is ValueType.INT:
                assert type(value) is int, (profile.type, key, value)
            elif m.value_type is ValueType.BOOL:
                assert type(value) is bool, (profile.type, key, value)
            else:
                assert value in m.values, (profile.type, key, value)
                assert value not in (*m.critical_values, *m.warning_values), (profile.type, key)
            if m.range is not None:
                assert m.range.min <= value <= m.range.max, (profile.type, key, value)
                band = normal_band(m)
                assert band.lo <= value <= band.hi, (profile.type, key, value, band)
            if m.typical is not None:
                assert m.typical.min <= value <= m.typical.max, (profile.type, key, value)


def test_values_have_the_profile_types_and_stay_in_the_typical_band(catalog: Catalog) -> None:
    for profile in catalog.profiles.values():
        check_types_and_bands(profile, series(profile, hours=48, step_s=300))


def shipped_profiles() -> list[DeviceProfile]:
    if not any((REPO / "device_profiles" / "types").glob("*.yaml")):
        return []
    return list(load_catalog(REPO / "device_profiles" / "types", REPO / "device_profiles" / "inventory")
                .profiles.values())


@pytest.mark.parametrize("profile", shipped_profiles(), ids=lambda p: p.type)
def test_shipped_profiles_give_typed_in_band_values(profile: DeviceProfile) -> None:
    check_types_and_bands(profile, series(profile, hours=48, step_s=int(profile.reporting_interval_s) * 5))


def test_values_stay_clear_of_alert_thresholds() -> None:
    o2 = DeviceProfile.model_validate({"type": "tunnel_multigas", **PROFILES["tunnel_multigas"]})
    band = normal_band(o2.measurements["o2"])
    assert band.lo > 19.5
    assert band.hi < 22.0


def test_meters_never_decrease_and_integrate_power() -> None:
    profile = DeviceProfile.model_validate({"type": "smart_meter", **PROFILES["smart_meter"]})
    rows = series(profile, hours=24, step_s=60)
    for key in ("energy", "pulses"):
        assert all(a[key] <= b[key] for a, b in itertools.pairwise(rows)), key
    # kWh gained over a day = mean kW x 24 h, within the rounding of the register.
    gained = rows[-1]["energy"] - rows[0]["energy"]
    mean_kw = statistics.fmean(r["power"] for r in rows[1:])
    assert gained == pytest.approx(mean_kw * (len(rows) - 1) / 60, rel=0.01)
    assert gained > 0


def test_chp_gas_flow_and_heat_follow_electrical_power() -> None:
    profile = DeviceProfile.model_validate({"type": "chp_engine", **PROFILES["chp_engine"]})
    rows = [r for r in series(profile, hours=6, step_s=10) if r["state"] == "running"]
    power = [r["p_el"] for r in rows]
    assert statistics.correlation(power, [r["gas_flow"] for r in rows]) > 0.9
    assert statistics.correlation(power, [r["q_heat"] for r in rows]) > 0.9
    assert statistics.pstdev(power) > 20  # it does move: a daily cycle plus drift, not a flat line


def test_heat_pump_cop_is_heat_over_electricity() -> None:
    profile = DeviceProfile.model_validate({"type": "heat_pump", **PROFILES["heat_pump"]})
    for row in series(profile, hours=24, step_s=60):
        assert row["cop"] == pytest.approx(row["q_heat"] / row["p_el"], rel=0.02)


def test_pv_power_follows_the_sun() -> None:
    profile = DeviceProfile.model_validate({"type": "pv_inverter", **PROFILES["pv_inverter"]})
    midnight_local = 1_780_012_800_000 - 8 * 3_600_000  # 2026-05-29 00:00 at UTC+8
    rows = series(profile, hours=24, step_s=60, start=midnight_local)
    assert all(r["p_ac"] == 0.0 and r["irradiance"] == 0.0 for r in rows[:5 * 60])  # 00:00-05:00
    assert max(r["p_ac"] for r in rows[11 * 60:13 * 60]) > 100  # around noon
    assert statistics.correlation([r["irradiance"] for r in rows], [r["p_ac"] for r in rows]) > 0.9


def test_model_refuses_time_going_back() -> None:
    model = DeviceModel(DeviceProfile.model_validate({"type": "heat_pump", **PROFILES["heat_pump"]}), 1, "x")
    model.sample(START)
    with pytest.raises(ValueError, match="went back"):
        model.sample(START - 1)


# --- stream ---------------------------------------------------------------------------------


def test_each_device_reports_at_its_cadence_with_seq_from_one(catalog: Catalog) -> None:
    sim = DistrictSimulator(catalog, seed=1, start_ms=START, duration_s=600)
    seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
    times = []
    for message in sim.messages():
        times.append(message.sim_ms)
        body = body_of(message)
        assert body["device"] == topic_device(message.topic) == message.device_id
        assert message.topic == f"ct/v1/testsite/{message.system}/{message.device_id}/telemetry"
        seen[message.device_id].append((body["seq"], body["ts"]))
    assert times == sorted(times)
    assert set(seen) == set(TYPE_OF)
    for device_id, pairs in seen.items():
        interval_ms = int(catalog.devices[device_id].profile.reporting_interval_s * 1000)
        assert [s for s, _ in pairs] == list(range(1, len(pairs) + 1))
        assert {b - a for (_, a), (_, b) in itertools.pairwise(pairs)} == {interval_ms}
        assert len(pairs) == 600_000 // interval_ms
        assert START <= pairs[0][1] < START + 1000


def test_seq_is_strictly_increasing_per_device_even_with_faults(catalog: Catalog) -> None:
    sim = DistrictSimulator(catalog, seed=5, start_ms=START, duration_s=1800, batch=4, faults={"all": 3})
    last: dict[str, int] = {}
    for message in sim.messages():
        reasons = {f.reason for f in message.faults}
        if reasons & {"not_json", "not_utf8", "bad_schema", "payload_too_large", "device_mismatch"}:
            continue
        for reading in readings_of(message):
            before = last.get(message.device_id, 0)
            if "duplicate_sequence" in reasons:
                assert reading["seq"] == before  # a re-send of the last reading, never a stale one
            else:
                assert reading["seq"] > before
            last[message.device_id] = reading["seq"]


def test_batch_mode_packs_n_readings_per_message(catalog: Catalog) -> None:
    sim = DistrictSimulator(catalog, seed=1, start_ms=START, duration_s=3600, batch=10)
    sizes: dict[str, list[int]] = defaultdict(list)
    for message in sim.messages():
        body = body_of(message)
        assert set(body) == {"device", "readings"}
        sizes[message.device_id].append(len(body["readings"]))
        assert message.sim_ms == body["readings"][-1]["ts"]  # a batch leaves with its last reading
    for device_id, counts in sizes.items():
        total = 3_600_000 // int(catalog.devices[device_id].profile.reporting_interval_s * 1000)
        assert sum(counts) == total
        assert counts[:-1] == [10] * (len(counts) - 1)
        assert counts[-1] == total - 10 * (len(counts) - 1)
        assert counts[-1] > 0


def test_single_mode_payload_has_exactly_the_contract_keys(catalog: Catalog) -> None:
    sim = DistrictSimulator(catalog, seed=1, start_ms=START, duration_s=60)
    for message in sim.messages():
        body = body_of(message)
        assert list(body) == ["device", "seq", "ts", "values"]
        assert type(body["seq"]) is int
        assert type(body["ts"]) is int
        assert list(body["values"]) == list(catalog.devices[message.device_id].profile.measurements)


def test_max_messages_and_device_selection(catalog: Catalog) -> None:
    sim = DistrictSimulator(catalog, seed=1, start_ms=START, duration_s=None, max_messages=25)
    assert len(list(sim.messages())) == sim.planned_messages == 25
    picked = select_devices(catalog, max_devices=4)
    assert len({d.profile.type for d in picked}) == 4  # round-robin: one of each type first
    assert {d.system.value for d in select_devices(catalog, ["tunnel"])} == {"tunnel"}
    with pytest.raises(ValueError, match="must end"):
        DistrictSimulator(catalog, duration_s=None)


def test_status_messages_are_retained_births_and_offline(catalog: Catalog) -> None:
    sim = DistrictSimulator(catalog, seed=1, start_ms=START, duration_s=60)
    births, offline = sim.birth_messages(), sim.offline_messages()
    assert len(births) == len(offline) == len(catalog.devices)
    assert all(m.retain and m.topic.endswith("/status") for m in births + offline)
    assert json.loads(births[0].payload) == {"state": "online", "ts": START}
    assert json.loads(offline[0].payload) == {"state": "offline"}


def test_default_start_keeps_accelerated_runs_out_of_the_future(catalog: Catalog) -> None:
    sim = DistrictSimulator(catalog, seed=1, duration_s=3600, pacing=Pacing(speed=100))
    real = DistrictSimulator(catalog, seed=1, duration_s=3600)
    assert sim.end_ms <= real.start_ms + 1000
    assert Pacing(speed=0).mode == "unpaced"
    assert Pacing(rate=50).mode == "rate"


# --- faults ---------------------------------------------------------------------------------


def test_parse_fault_counts() -> None:
    assert parse_fault_counts("not_json=2, out_of_range=3") == {Reason.NOT_JSON: 2, Reason.OUT_OF_RANGE: 3}
    assert set(parse_fault_counts("all=1")) == set(FAULT_REASONS)
    for bad in ("nonsense=1", "not_json", "not_json=x", "bad_topic=1"):
        with pytest.raises(FaultPlanError):
            parse_fault_counts(bad)


def test_more_faults_than_readings_is_refused(catalog: Catalog) -> None:
    with pytest.raises(FaultPlanError, match="only"):
        DistrictSimulator(catalog, seed=1, start_ms=START, duration_s=10, faults={"not_json": 1000})


@pytest.mark.parametrize("batch", [1, 5])
def test_manifest_counts_equal_the_requested_counts(catalog: Catalog, batch: int) -> None:
    requested = {"not_json": 2, "out_of_range": 3, "duplicate_sequence": 2, "unknown_device": 1, "wrong_type": 4}
    summary = DistrictSimulator(catalog, seed=9, start_ms=START, duration_s=1800, batch=batch,
                                faults=requested).dry_run()
    assert summary.fault_counts == requested
    assert all(f.level == LEVELS[Reason(f.reason)].value for f in summary.faults)


def fault_run(catalog: Catalog, batch: int = 1) -> tuple[DistrictSimulator, list[SimMessage]]:
    sim = DistrictSimulator(catalog, seed=11, start_ms=START, duration_s=1800, batch=batch, faults={"all": 2})
    return sim, list(sim.messages())


def assert_broken_as_stated(catalog: Catalog, sim: DistrictSimulator, messages: list[SimMessage]) -> None:
    """Each manifest entry's message is wrong in exactly the way its reason says."""
    sent: dict[str, list[dict[str, Any]]] = defaultdict(list)  # earlier readings per topic
    for message in messages:
        for fault in message.faults:
            assert fault.topic == message.topic
            assert fault.device_id == topic_device(message.topic)
            check_fault(catalog, sim, fault, message, sent[message.topic])
        if not message.faults or message.faults[0].level != Level.MESSAGE:
            sent[message.topic].extend(readings_of(message))


def check_fault(catalog: Catalog, sim: DistrictSimulator, fault: FaultRecord,  # noqa: C901, PLR0912
                message: SimMessage, earlier: list[dict[str, Any]]) -> None:
    reason, field = fault.reason, fault.field
    payload, device_id = message.payload, topic_device(message.topic)
    if reason == "not_utf8":
        with pytest.raises(UnicodeDecodeError):
            payload.decode("utf-8")
        return
    if reason == "not_json":
        payload.decode("utf-8")
        with pytest.raises(json.JSONDecodeError):
            json.loads(payload)
        return
    body = json.loads(payload)
    if reason == "payload_too_large":
        assert len(payload) > 65_536
        assert body["device"] == device_id
    elif reason == "bad_schema":
        assert not isinstance(body, dict) or "device" not in body
    elif reason == "unknown_device":
        assert device_id not in catalog.devices
        assert body["device"] == device_id
    elif reason == "device_mismatch":
        assert isinstance(body["device"], str)
        assert body["device"] != device_id
    else:
        [reading] = [r for r in readings_of(message) if r["seq"] == fault.seq]
        profile = catalog.devices[device_id].profile
        if reason == "timestamp_in_future":
            assert reading["ts"] > sim.end_ms + 23 * 3_600_000
        elif reason == "timestamp_too_old":
            assert reading["ts"] < sim.start_ms - 29 * 86_400_000
        elif reason == "duplicate_sequence":
            assert reading == earlier[-1]  # the same seq, the same content, as the last one sent
        elif reason == "unknown_measurement":
            assert field not in profile.measurements
        elif reason == "wrong_type":
            assert isinstance(reading["values"][field], str)
            assert profile.measurements[str(field)].value_type in (ValueType.FLOAT, ValueType.INT)
        elif reason == "out_of_range":
            span = profile.measurements[str(field)].range
            assert span is not None
            assert reading["values"][field] > span.max
        else:
            pytest.fail(f"unchecked reason {reason}")


@pytest.mark.parametrize("batch", [1, 4])
def test_every_fault_is_wrong_in_the_stated_way(catalog: Catalog, batch: int) -> None:
    sim, messages = fault_run(catalog, batch)
    assert_broken_as_stated(catalog, sim, messages)
    assert Counter(f.reason for m in messages for f in m.faults) == dict.fromkeys(FAULT_REASONS, 2)


@pytest.mark.parametrize("batch", [1, 4])
def test_the_pipeline_validator_agrees_with_the_manifest(catalog: Catalog, batch: int) -> None:
    sim, messages = fault_run(catalog, batch)
    clock = [0]
    validate = MessageValidator(catalog, Limits(), clock_ms=lambda: clock[0])
    summary = sim.new_summary()
    rejected: Counter[str] = Counter()
    points = 0
    for message in messages:
        clock[0] = message.sim_ms  # received as soon as sent
        outcome = validate(InboundMessage(message.topic, message.payload, message.sim_ms, NeverSettled()))
        rejected.update(r.reason.value for r in outcome.rejections)
        points += len(outcome.readings)
        summary.add(message)
    assert rejected == summary.fault_counts
    assert points == summary.expected_points
    assert summary.readings_sent == summary.expected_points  # every field fault leaves other fields
    clean = DistrictSimulator(catalog, seed=11, start_ms=START, duration_s=1800, batch=batch).dry_run()
    lost = sum(1 for f in summary.faults if f.level == "message" and f.reason != "unknown_device") + \
        summary.fault_counts["timestamp_in_future"] + summary.fault_counts["timestamp_too_old"]
    assert summary.expected_points == clean.expected_points - lost
