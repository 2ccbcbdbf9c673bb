"""Clear bands and flat-line limits from the sensor's resolution and noise: oscillations around every
threshold kind stay one alert, healthy quantised O2 cells never look stuck, stuck ones do."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from citytelemetry.alerts.bands import flat_line_limits
from citytelemetry.alerts.compile import RuleSet, compile_rules
from citytelemetry.alerts.lifecycle import Tracker
from citytelemetry.alerts.model import Alert
from citytelemetry.alerts.rulefiles import load_rule_files
from citytelemetry.alerts.rules import FlatLine, NeighbourSpread, RateOfChange, Threshold, Thresholds
from citytelemetry.profiles import Catalog, load_catalog
from citytelemetry.profiles.models import Measurement, Sensor
from citytelemetry.records import FieldValue, Reading

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_780_000_000_000
STEP_MS = 10_000


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")


class Rules:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.log: list[tuple[str, str, str]] = []  # (state, rule key, subject)
        self.ruleset: RuleSet = compile_rules(catalog, load_rule_files(ROOT / "alert_rules", catalog),
                                              Tracker(self._record))

    def _record(self, alert: Alert) -> None:
        self.log.append((alert.state.value, alert.rule.key, alert.subject.key))

    def of(self, kind: type) -> list[object]:
        rules = [rule for of_type in self.ruleset.by_type.values() for rule in of_type]
        levels = [level for rule in rules if isinstance(rule, Thresholds) for level in rule.levels]
        return [rule for rule in [*rules, *levels] if isinstance(rule, kind)]

    def reading(self, device_id: str, i: int, **fields: FieldValue) -> Reading:
        device = self.catalog.devices[device_id]
        return Reading(device.profile.type, device_id, device.tags, dict(fields), T0 + i * STEP_MS, i)

    def device_of(self, type_name: str) -> str:
        return next(d.id for d in self.catalog.devices.values() if d.profile.type == type_name)


def _quantise(value: float, step: float) -> float:
    return round(round(value / step) * step, 9)


def _slow_wave(i: int, centre: float, amplitude: float) -> float:
    return centre + amplitude * math.sin(2 * math.pi * i / 40)  # 400 s period: long past every `for`


def test_every_profile_threshold_holds_through_its_noise_around_the_level(catalog: Catalog) -> None:
    rules = Rules(catalog)
    thresholds = [r for r in rules.of(Threshold) if isinstance(r, Threshold)]
    checked = 0
    for rule in thresholds:
        type_name = rule.info.scope
        sensor = catalog.profiles[type_name].measurements[rule.field].sensor
        assert sensor is not None, f"{type_name}.{rule.field} has thresholds but no sensor"
        device = rules.device_of(type_name)
        amplitude = 3 * sensor.noise  # the largest excursion noise gives a healthy reading
        for i in range(200):
            rule(rules.reading(device, i, **{rule.field: _quantise(_slow_wave(i, rule.level, amplitude),
                                                                   sensor.resolution)}))
        mine = [state for state, key, _ in rules.log if key == rule.info.key]
        assert mine == ["firing"], f"{rule.info.key}: {mine} (level {rule.level}, clear {rule.clear})"
        typical = catalog.profiles[type_name].measurements[rule.field].typical
        assert typical is not None
        rule(rules.reading(device, 200, **{rule.field: (typical.min + typical.max) / 2}))
        assert [s for s, key, _ in rules.log if key == rule.info.key] == ["firing", "resolved"]
        checked += 1
    assert checked == len(thresholds) >= 90


def test_o2_low_does_not_flap_on_a_quarter_percent_oscillation(catalog: Catalog) -> None:
    """The audit's case: 19.5 +- 0.25 %vol, 0.1 %vol steps, one reading every 10 s, 60 s period."""
    rules = Rules(catalog)
    gas = "tun-c004-gas1"
    for i in range(240):  # 40 minutes
        value = _quantise(19.5 + 0.25 * math.sin(2 * math.pi * i / 6), 0.1)
        for rule in rules.ruleset.by_type["tunnel_multigas"]:
            rule(rules.reading(gas, i, o2=value, ch4=0.5, h2s=0.2, co=1.0))
    assert rules.log == [("firing", "tunnel_multigas_o2_low/warning", gas)]
    for rule in rules.ruleset.by_type["tunnel_multigas"]:
        rule(rules.reading(gas, 240, o2=20.9, ch4=0.5, h2s=0.2, co=1.0))
    assert rules.log[-1] == ("resolved", "tunnel_multigas_o2_low/warning", gas)
    assert len(rules.log) == 2


def test_rate_of_change_and_neighbour_spread_hold_through_oscillations_around_their_limits(catalog: Catalog) -> None:
    rules = Rules(catalog)
    rate = next(r for r in rules.of(RateOfChange) if isinstance(r, RateOfChange) and r.info.name == "sump_level_rising")
    level = 0.2
    for i in range(120):  # rising 0.15 +- 0.05 m/min (limit 0.15, clear 0.075): fires once, stays
        level += (0.15 + 0.05 * math.sin(2 * math.pi * i / 12)) / 6
        rate(rules.reading("tun-c005-sump", i, level=round(level, 4)))
    assert [s for s, key, _ in rules.log if key.startswith("sump_level_rising")] == ["firing"]
    spread = next(r for r in rules.of(NeighbourSpread) if isinstance(r, NeighbourSpread))
    for i in range(120):  # the two O2 cells of c006 disagree by 0.6 +- 0.15 (limit 0.6, clear 0.4)
        rules_spread = 0.6 + 0.15 * math.sin(2 * math.pi * i / 40)
        spread(rules.reading("tun-c006-gas1", i, o2=20.9))
        spread(rules.reading("tun-c006-gas2", i, o2=round(20.9 - rules_spread, 3)))
    assert [s for s, key, _ in rules.log if key.startswith("o2_sensors_disagree")] == ["firing"]


def test_flat_line_limits_follow_resolution_and_noise() -> None:
    o2 = flat_line_limits(Sensor(resolution=0.1, noise=0.1, source="test"))
    assert (o2.tolerance, o2.min_count) == (0.05, 24)
    assert o2.repeat_p ** (o2.min_count - 1) < 1e-9
    quiet = flat_line_limits(Sensor(resolution=0.1, noise=0.02, source="test"))  # quieter than its steps
    assert quiet.min_count > 1000


def test_healthy_quantised_o2_cells_never_look_stuck_and_a_stuck_one_does(catalog: Catalog) -> None:
    rules = Rules(catalog)
    flat = next(r for r in rules.of(FlatLine) if isinstance(r, FlatLine))
    assert (flat.tolerance, flat.min_count) == (0.05, 24)
    rng = random.Random(17)
    cells = [f"tun-c{n:03d}-gas{k}" for n in range(1, 11) for k in (1, 2)]
    for i in range(8640):  # one day of readings every 10 s, 20 healthy cells: 0.1 %vol steps, noise 0.1
        for cell in cells:
            flat(rules.reading(cell, i, o2=_quantise(20.9 + rng.gauss(0.0, 0.1), 0.1)))
    assert rules.log == []
    for i in range(23):
        flat(rules.reading("tun-c011-gas1", i, o2=20.9))
    assert rules.log == []
    flat(rules.reading("tun-c011-gas1", 23, o2=20.9))  # the 24th repeat, 230 s after the first
    assert rules.log == [("firing", "o2_flat_line/warning", "tun-c011-gas1")]


def test_a_noise_band_that_reaches_the_typical_band_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"within the sensor's noise band 1.3"):
        Measurement.model_validate({
            "description": "oxygen", "value_type": "float", "unit": "%vol", "range": {"min": 0, "max": 25},
            "typical": {"min": 20.5, "max": 21.2}, "sensor": {"resolution": 0.1, "noise": 0.2, "source": "test"},
            "thresholds": {"low": {"warning": 19.5, "source": "test"}}})
