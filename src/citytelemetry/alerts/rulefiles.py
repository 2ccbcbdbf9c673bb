"""Schema and loader of ``alert_rules/*.yaml``: validated whole, every error with its file and key.

A rule file holds ``rules:``, a list of rules told apart by ``kind``. Loading is all or nothing, like
the device profiles: ``load_rule_files`` raises ``AlertRuleError`` listing every problem found, and
checks each rule against the catalog (device types, measurements, their value types, location keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from citytelemetry.alerts.model import Severity
from citytelemetry.profiles import Catalog
from citytelemetry.profiles.loader import _parse, _yaml_files
from citytelemetry.profiles.models import Identifier, LocationKey, Measurement, System, ValueType

Seconds = Annotated[float, Field(ge=0, le=7 * 86_400, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Ratio = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Named(Strict):
    """What every rule from a file has: the alertname, its severity and the source of its figure."""

    name: Identifier
    severity: Severity
    for_s: Seconds = 0.0
    source: str = Field(min_length=3)
    summary: str | None = None  # str.format template: {subject} {value} {unit} {threshold} {clear} {detail}
    resolved_summary: str | None = None  # the same, for the resolution: what the value is now


class LevelOverride(Strict):
    type: Identifier
    measurement: Identifier
    warning_for_s: Seconds | None = None
    critical_for_s: Seconds | None = None
    hysteresis: float | None = Field(default=None, ge=0, le=0.9)
    enabled: bool = True


class ProfileLevels(Strict):
    """Thresholds and alarm states of every device profile become rules; this sets their timing."""

    kind: Literal["profile_levels"]
    warning_for_s: Seconds = 30.0
    critical_for_s: Seconds = 10.0
    states_for_s: Seconds = 0.0
    # The clear level lies this fraction of the way back from the threshold to the typical band.
    hysteresis: float = Field(default=0.1, ge=0, le=0.9)
    overrides: list[LevelOverride] = []


class RateOfChange(Named):
    kind: Literal["rate_of_change"]
    type: Identifier
    measurement: Identifier
    direction: Literal["rise", "fall"] = "rise"
    per_min: Positive  # alarm when the value moves this much per minute, or faster
    window_s: Positive = 60.0  # slope over this span of device time
    clear_fraction: float = Field(default=0.5, ge=0, lt=1)


class FlatLine(Named):
    """Left out, ``tolerance`` and ``min_count`` come from the measurement's ``sensor`` (alerts/bands.py)."""

    kind: Literal["flat_line"]
    type: Identifier
    measurement: Identifier
    tolerance: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    min_duration_s: Positive
    min_count: int | None = Field(default=None, ge=2)


class Hampel(Named):
    kind: Literal["hampel"]
    type: Identifier
    measurement: Identifier
    window: int = Field(default=21, ge=7, le=301)
    k: float = Field(default=6.0, ge=2)
    floor: Positive  # smallest deviation (in the unit) that counts: MAD is 0 on a quantised flat signal
    min_outliers: int = Field(default=3, ge=1)  # consecutive outliers before the condition holds


class Stale(Named):
    kind: Literal["stale"]
    intervals: float = Field(default=3.0, ge=1.5, le=100)  # silent for k x the profile's interval
    offline_for_s: Seconds = 60.0  # a last will "offline" must last this long
    # This share of a system's devices silent at once is one incident: no device alert each (see Silence).
    mass_silence_share: float = Field(default=1.0, gt=0, le=1)
    systems: list[System] = []  # empty: every system


class Condition(Strict):
    type: Identifier
    measurement: Identifier
    above: float | None = None  # numeric: value >= above
    below: float | None = None  # numeric: value <= below
    clear: float | None = None  # numeric hysteresis: the condition holds until the value passes this
    states: list[Identifier] = []  # enum / bool (true, false): value in states

    @model_validator(mode="after")
    def _one_test(self) -> Self:
        tests = (self.above is not None) + (self.below is not None) + bool(self.states)
        if tests != 1:
            raise ValueError("give exactly one of above, below or states")
        if self.clear is not None:
            if self.above is not None and self.clear > self.above:
                raise ValueError("clear must be at or below 'above'")
            if self.below is not None and self.clear < self.below:
                raise ValueError("clear must be at or above 'below'")
            if self.states:
                raise ValueError("clear applies to numeric conditions")
        return self


class Composite(Named):
    """All conditions hold at once, each for at least one device of the group (a compartment, a unit)."""

    kind: Literal["composite"]
    group_by: list[LocationKey] = Field(min_length=1)
    when: list[Condition] = Field(min_length=2)
    max_age_s: Positive = 300.0  # a device's last value older than this (device time) no longer counts


class NeighbourSpread(Named):
    """Sensors of one type in one group should agree: max - min of their latest values."""

    kind: Literal["neighbour_spread"]
    type: Identifier
    measurement: Identifier
    group_by: list[LocationKey] = Field(min_length=1)
    max_spread: Positive
    clear_spread: float | None = Field(default=None, ge=0)
    max_age_s: Positive = 60.0


class Coverage(Named):
    """Share of registered devices with a reading within k x their interval (the 90 % target)."""

    kind: Literal["coverage"]
    systems: list[System] = Field(min_length=1)
    min_ratio: Ratio
    intervals: float = Field(default=3.0, ge=1.5, le=100)


class Completeness(Named):
    """Readings received / readings expected from the profiles' intervals over a window, per system."""

    kind: Literal["completeness"]
    systems: list[System] = Field(min_length=1)
    min_ratio: Ratio
    window_s: Positive = 600.0
    max_interval_s: Positive = 150.0  # slower devices are left out: too few readings per window


FileRule = Annotated[RateOfChange | FlatLine | Hampel | Stale | Composite | NeighbourSpread | Coverage
                     | Completeness | ProfileLevels, Field(discriminator="kind")]


class RuleFile(Strict):
    rules: list[FileRule] = Field(min_length=1)


class AlertRuleError(Exception):
    """One or more rule files are invalid; ``problems`` holds 'file: key: message' lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in alert rules:\n  " + "\n  ".join(problems))


class LoadedRules(Strict):
    levels: ProfileLevels
    rules: list[FileRule]


def load_rule_files(directory: Path, catalog: Catalog) -> LoadedRules:
    """Read every ``*.yaml`` under ``directory``, check each rule against ``catalog``; all or nothing."""
    problems: list[str] = []
    levels: list[tuple[Path, ProfileLevels]] = []
    rules: list[FileRule] = []
    seen: dict[tuple[str, str], str] = {}
    for path in _yaml_files(directory, problems):
        parsed = _parse(RuleFile, path, problems)
        if parsed is None:
            continue
        for index, rule in enumerate(parsed.rules):
            where = f"{path}: rules.{index}"
            if isinstance(rule, ProfileLevels):
                levels.append((path, rule))
                problems.extend(f"{where}.overrides.{i}: {p}" for i, o in enumerate(rule.overrides)
                                for p in _check_field(catalog, o.type, o.measurement, numeric=None))
                continue
            problems.extend(f"{where}: {p}" for p in _check(rule, catalog))
            key = (rule.name, rule.severity.value)
            if key in seen:
                problems.append(f"{where}.name: '{rule.name}' ({rule.severity}) is already defined at {seen[key]}")
            seen[key] = where
            rules.append(rule)
    if len(levels) > 1:
        problems.append(f"{levels[1][0]}: kind: profile_levels is already given in {levels[0][0]}")
    if problems:
        raise AlertRuleError(problems)
    return LoadedRules(levels=levels[0][1] if levels else ProfileLevels(kind="profile_levels"), rules=rules)


def _check(rule: FileRule, catalog: Catalog) -> list[str]:
    if isinstance(rule, FlatLine):
        problems = _check_field(catalog, rule.type, rule.measurement, numeric=True)
        measurement = _measurement(catalog, rule.type, rule.measurement)
        if not problems and measurement is not None and measurement.sensor is None and \
                (rule.tolerance is None or rule.min_count is None):
            problems.append(f"tolerance: {rule.type}.{rule.measurement} has no sensor (resolution, noise) to derive "
                       "tolerance and min_count from: give both, or the profile's sensor")
        return problems
    if isinstance(rule, RateOfChange | Hampel | NeighbourSpread):
        return _check_field(catalog, rule.type, rule.measurement, numeric=True)
    if isinstance(rule, Composite):
        out: list[str] = []
        for i, cond in enumerate(rule.when):
            numeric = cond.above is not None or cond.below is not None
            out.extend(f"when.{i}.{p}" for p in _check_field(catalog, cond.type, cond.measurement, numeric=numeric))
            measurement = _measurement(catalog, cond.type, cond.measurement)
            if measurement is not None and measurement.value_type is ValueType.ENUM:
                unknown = sorted(set(cond.states) - set(measurement.values))
                if unknown:
                    out.append(f"when.{i}.states: {unknown} are not states of {cond.type}.{cond.measurement}")
            if measurement is not None and measurement.value_type is ValueType.BOOL and \
                    not set(cond.states) <= {"true", "false"}:
                out.append(f"when.{i}.states: a bool measurement has the states true and false")
        return out
    return []


def _measurement(catalog: Catalog, type_name: str, key: str) -> Measurement | None:
    profile = catalog.profiles.get(type_name)
    return profile.measurements.get(key) if profile else None


def _check_field(catalog: Catalog, type_name: str, key: str, *, numeric: bool | None) -> list[str]:
    profile = catalog.profiles.get(type_name)
    if profile is None:
        return [f"type: unknown device type '{type_name}'"]
    measurement = profile.measurements.get(key)
    if measurement is None:
        known = ", ".join(sorted(profile.measurements))
        return [f"measurement: '{key}' is not a measurement of {type_name} (known: {known})"]
    is_numeric = measurement.value_type in (ValueType.FLOAT, ValueType.INT)
    if numeric is not None and numeric != is_numeric:
        want = "a numeric" if numeric else "an enum or bool"
        return [f"measurement: {type_name}.{key} is {measurement.value_type}, this needs {want} measurement"]
    return []
