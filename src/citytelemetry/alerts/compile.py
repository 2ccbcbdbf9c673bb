"""Compile the device profiles and ``alert_rules/`` into rule callables, indexed by device type.

    ruleset = compile_rules(catalog, load_rule_files(dir, catalog), tracker, runbook_base="docs/runbooks.md")
    for rule in ruleset.by_type[reading.measurement]: rule(reading)
    for rule in ruleset.time_rules: rule(now_ms)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from citytelemetry.alerts import rulefiles as rf
from citytelemetry.alerts import rules as r
from citytelemetry.alerts import scope
from citytelemetry.alerts.bands import clear_level, flat_line_limits
from citytelemetry.alerts.lifecycle import Tracker
from citytelemetry.alerts.model import RuleInfo, Severity, Subject
from citytelemetry.alerts.rules import ReadingRule
from citytelemetry.profiles import Catalog, RegisteredDevice
from citytelemetry.profiles.models import Measurement, ValueType

TimeRule = Callable[[int], None]


@dataclass(slots=True)
class RuleSet:
    by_type: dict[str, list[ReadingRule]] = field(default_factory=lambda: defaultdict(list))
    every_reading: list[ReadingRule] = field(default_factory=list)  # completeness counters
    time_rules: list[TimeRule] = field(default_factory=list)
    infos: list[RuleInfo] = field(default_factory=list)
    subjects: dict[str, Subject] = field(default_factory=dict)
    presence: r.Presence = field(default_factory=r.Presence)
    clock_start: list[int | None] = field(default_factory=lambda: [None])

    @property
    def rules_by_key(self) -> dict[str, RuleInfo]:
        return {info.key: info for info in self.infos}


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


class _Builder:
    def __init__(self, catalog: Catalog, tracker: Tracker, runbook_base: str) -> None:
        self.catalog, self.tracker, self.runbook_base = catalog, tracker, runbook_base
        self.out = RuleSet()
        for device in catalog.devices.values():
            labels = (("site", device.site), ("system", device.system.value), ("device", device.id),
                      *sorted(device.location.items()), (scope.LABEL, scope.of_device(device.id, device.location)))
            self.out.subjects[device.id] = Subject(device.id, labels, device.profile.type)
        self.devices = {d.id: d.profile.type for d in catalog.devices.values()}

    def info(self, rule: rf.Named, kind: str, scope: str, condition: str, summary: str, unit: str = "", *,
             resolved: str = "", clear: float | None = None) -> RuleInfo:
        made = RuleInfo(name=rule.name, severity=rule.severity, for_ms=round(rule.for_s * 1000),
                        summary=rule.summary or summary, source=rule.source,
                        runbook=f"{self.runbook_base}#{rule.name}", kind=kind, scope=scope,
                        condition=condition, unit=unit, resolved=rule.resolved_summary or resolved, clear=clear)
        self.out.infos.append(made)
        return made

    def device_subjects(self) -> dict[str, Subject]:
        return self.out.subjects

    def group(self, device: RegisteredDevice, keys: Iterable[str]) -> Subject | None:
        pairs = []
        for key in keys:
            value = device.location.get(key)
            if value is None:
                return None
            pairs.append((key, value))
        subject_key = f"{device.site}/{device.system.value}/" + ",".join(f"{k}={v}" for k, v in pairs)
        subject = self.out.subjects.get(subject_key)
        if subject is None:
            labels = (("site", device.site), ("system", device.system.value), *pairs,
                      (scope.LABEL, scope.of_location(dict(pairs)) or scope.of_site(device.site, device.system.value)))
            name = " ".join(f"{k} {v}" for k, v in pairs)
            subject = self.out.subjects[subject_key] = Subject(subject_key, labels, name=name)
        return subject

    def site(self, site: str, system: str) -> Subject:
        key = f"{site}/{system}"
        subject = self.out.subjects.get(key)
        if subject is None:
            labels = (("site", site), ("system", system), (scope.LABEL, scope.of_site(site, system)))
            subject = self.out.subjects[key] = Subject(key, labels, name=f"{site} {system}")
        return subject

    def of_type(self, type_name: str) -> list[RegisteredDevice]:
        return [d for d in self.catalog.devices.values() if d.profile.type == type_name]

    def unit(self, type_name: str, key: str) -> str:
        return self.catalog.profiles[type_name].measurements[key].unit


def compile_rules(catalog: Catalog, loaded: rf.LoadedRules, tracker: Tracker, *,
                  runbook_base: str = "docs/runbooks.md") -> RuleSet:
    b = _Builder(catalog, tracker, runbook_base)
    _profile_levels(b, loaded.levels)
    for rule in loaded.rules:
        _compile_file_rule(b, rule)
    return b.out


# --- from the profiles ----------------------------------------------------------------------------


def _profile_levels(b: _Builder, levels: rf.ProfileLevels) -> None:
    overrides = {(o.type, o.measurement): o for o in levels.overrides}
    for profile in sorted(b.catalog.profiles.values(), key=lambda p: p.type):
        if not b.of_type(profile.type):
            continue
        for key, m in profile.measurements.items():
            override = overrides.get((profile.type, key))
            if override is not None and not override.enabled:
                continue
            if m.value_type is ValueType.ENUM:
                _states(b, profile.type, key, m, levels)
            elif m.thresholds is not None:
                _thresholds(b, profile.type, key, m, levels, override)


def _states(b: _Builder, type_name: str, key: str, m: Measurement, levels: rf.ProfileLevels) -> None:
    for severity, states in ((Severity.WARNING, m.warning_values), (Severity.CRITICAL, m.critical_values)):
        if not states:
            continue
        name = f"{type_name}_{key}"
        info = RuleInfo(name=name, severity=severity, for_ms=round(levels.states_for_s * 1000),
                        summary=f"{{subject}}: {_escape(m.description.lower())} is {{detail}}",
                        resolved=f"{{subject}}: resolved: {_escape(m.description.lower())} is {{detail}} now",
                        source=m.source or f"device profile {type_name}", runbook=f"{b.runbook_base}#{type_name}",
                        kind="profile state", scope=type_name, condition=f"{key} in {list(states)}")
        b.out.infos.append(info)
        b.out.by_type[type_name].append(r.States(info, key, states, tracker=b.tracker, subjects=b.out.subjects))


def _thresholds(b: _Builder, type_name: str, key: str, m: Measurement, levels: rf.ProfileLevels,
                override: rf.LevelOverride | None) -> None:
    assert m.thresholds is not None
    assert m.range is not None
    hysteresis = override.hysteresis if override and override.hysteresis is not None else levels.hysteresis
    of_field: list[r.Threshold] = []
    for side, threshold in (("high", m.thresholds.high), ("low", m.thresholds.low)):
        if threshold is None:
            continue
        high = side == "high"
        edge = (m.typical.max if high else m.typical.min) if m.typical else (m.range.min if high else m.range.max)
        for severity, level in ((Severity.WARNING, threshold.warning), (Severity.CRITICAL, threshold.critical)):
            if level is None:
                continue
            for_s = levels.warning_for_s if severity is Severity.WARNING else levels.critical_for_s
            if override is not None:
                chosen = override.warning_for_s if severity is Severity.WARNING else override.critical_for_s
                for_s = chosen if chosen is not None else for_s
            clear = clear_level(level, edge, hysteresis, m.sensor, high=high)
            sign = "≥" if high else "≤"
            what = _escape(m.description.lower())
            info = RuleInfo(
                name=f"{type_name}_{key}_{side}", severity=severity, for_ms=round(for_s * 1000),
                summary=f"{{subject}}: {what} {{value}} {{unit}} {sign} {severity.value} level {{threshold}} {{unit}}",
                resolved=(f"{{subject}}: resolved: {what} {{value}} {{unit}}, {'below' if high else 'above'} "
                          "the {clear} {unit} clear level"), clear=clear,
                source=threshold.source, runbook=f"{b.runbook_base}#{type_name}", kind="profile threshold",
                scope=type_name, condition=f"{key} {sign} {level:g} (clear {'<' if high else '>'} {clear:.4g})",
                unit=m.unit)
            b.out.infos.append(info)
            of_field.append(r.Threshold(info, key, level, clear, high=high, tracker=b.tracker, subjects=b.out.subjects))
    if of_field:  # one rule per field, its levels in this order: the order of their transitions
        b.out.by_type[type_name].append(r.Thresholds(key, of_field))


# --- from rule files ------------------------------------------------------------------------------


def _rate(b: _Builder, rule: rf.RateOfChange) -> None:
    unit = b.unit(rule.type, rule.measurement)
    word = "rising" if rule.direction == "rise" else "falling"
    info = b.info(rule, "rate of change", rule.type,
                  f"{rule.measurement} {word} ≥ {rule.per_min:g} {unit}/min over {rule.window_s:g} s",
                  f"{{subject}}: {rule.measurement} {word} {{value}} {{unit}}/min (limit {{threshold}} {{unit}}/min)",
                  unit, resolved=f"{{subject}}: resolved: {rule.measurement} {word} {{value}} {{unit}}/min now, "
                                 "under the {clear} {unit}/min clear level", clear=rule.per_min * rule.clear_fraction)
    b.out.by_type[rule.type].append(r.RateOfChange(
        info, rule.measurement, per_min=rule.per_min, window_s=rule.window_s, clear_fraction=rule.clear_fraction,
        rise=rule.direction == "rise", tracker=b.tracker, subjects=b.out.subjects))


def _flat(b: _Builder, rule: rf.FlatLine) -> None:
    unit = b.unit(rule.type, rule.measurement)
    sensor = b.catalog.profiles[rule.type].measurements[rule.measurement].sensor
    derived = flat_line_limits(sensor) if sensor is not None else None
    tolerance = rule.tolerance if rule.tolerance is not None else derived.tolerance if derived else 0.0
    min_count = rule.min_count if rule.min_count is not None else derived.min_count if derived else 2
    why = f" (from the sensor: steps {sensor.resolution:g}, noise {sensor.noise:g})" if sensor and derived else ""
    info = b.info(rule, "flat line", rule.type,
                  f"{rule.measurement} within ±{tolerance:g} for ≥ {min_count} readings and "
                  f"{rule.min_duration_s:g} s{why}",
                  f"{{subject}}: {rule.measurement} stuck at {{value}} {{unit}} for {{detail}}", unit,
                  resolved=f"{{subject}}: resolved: {rule.measurement} moving again ({{value}} {{unit}})")
    b.out.by_type[rule.type].append(r.FlatLine(
        info, rule.measurement, tolerance=tolerance, min_duration_s=rule.min_duration_s,
        min_count=min_count, tracker=b.tracker, subjects=b.out.subjects))


def _hampel(b: _Builder, rule: rf.Hampel) -> None:
    unit = b.unit(rule.type, rule.measurement)
    info = b.info(rule, "anomaly (Hampel)", rule.type,
                  f"|{rule.measurement} - median| > max({rule.k:g} x 1.4826 x MAD, {rule.floor:g}) over "
                  f"{rule.window} readings, {rule.min_outliers} in a row",
                  f"{{subject}}: {rule.measurement} {{value}} {{unit}} is anomalous ({{detail}})", unit,
                  resolved=f"{{subject}}: resolved: {rule.measurement} {{value}} {{unit}} is back in line ({{detail}})")
    b.out.by_type[rule.type].append(r.HampelRule(
        info, rule.measurement, window=rule.window, k=rule.k, floor=rule.floor, min_outliers=rule.min_outliers,
        tracker=b.tracker, subjects=b.out.subjects))


def _stale(b: _Builder, rule: rf.Stale) -> None:
    systems = set(rule.systems) or None
    limits = {d.id: round(rule.intervals * d.profile.reporting_interval_s * 1000)
              for d in b.catalog.devices.values() if systems is None or d.system in systems}
    info = b.info(rule, "stale / offline", ",".join(sorted(s.value for s in rule.systems)) or "every device",
                  f"no reading for {rule.intervals:g} x the profile interval, or last will 'offline' for "
                  f"{rule.offline_for_s:g} s",
                  "{subject}: {detail} (limit {threshold} s)", "s", resolved="{subject}: resolved: {detail}")
    groups = {d.id: f"{d.site}/{d.system.value}" for d in b.catalog.devices.values() if d.id in limits}
    b.out.time_rules.append(r.Silence(info, limits, offline_for_s=rule.offline_for_s, presence=b.out.presence,
                                      tracker=b.tracker, subjects=b.out.subjects, groups=groups,
                                      mass_share=rule.mass_silence_share))


def _composite(b: _Builder, rule: rf.Composite) -> None:
    types = {c.type for c in rule.when}
    groups = {d.id: s for d in b.catalog.devices.values() if d.profile.type in types
              if (s := b.group(d, rule.group_by)) is not None}
    tests: dict[str, list[tuple[int, r.Test]]] = defaultdict(list)
    words = []
    for index, c in enumerate(rule.when):
        tests[c.type].append((index, r.Test(c.measurement, c.above, c.below, c.clear, frozenset(c.states))))
        test = f"≥ {c.above:g}" if c.above is not None else (f"≤ {c.below:g}" if c.below is not None
                                                              else f"in {c.states}")
        words.append(f"any {c.type}.{c.measurement} {test}")
    unit = b.unit(rule.when[0].type, rule.when[0].measurement) if rule.when[0].states == [] else ""
    info = b.info(rule, "composite", f"per {'/'.join(rule.group_by)}", " and ".join(words),
                  f"{{subject}}: {rule.name.replace('_', ' ')} ({{value}} {{unit}})", unit,
                  resolved=f"{{subject}}: resolved: {rule.name.replace('_', ' ')} no longer holds")
    composite = r.Composite(info, tests, groups, len(rule.when), max_age_s=rule.max_age_s, tracker=b.tracker)
    for type_name in types:
        b.out.by_type[type_name].append(composite)


def _spread(b: _Builder, rule: rf.NeighbourSpread) -> None:
    groups = {d.id: s for d in b.of_type(rule.type) if (s := b.group(d, rule.group_by)) is not None}
    unit = b.unit(rule.type, rule.measurement)
    clear = rule.clear_spread if rule.clear_spread is not None else 0.8 * rule.max_spread
    info = b.info(rule, "neighbour spread", f"{rule.type} per {'/'.join(rule.group_by)}",
                  f"max - min of {rule.measurement} > {rule.max_spread:g} {unit} (clear ≤ {clear:g})",
                  f"{{subject}}: {rule.type} sensors disagree on {rule.measurement} by {{value}} {{unit}} "
                  f"(limit {{threshold}} {{unit}})", unit,
                  resolved=f"{{subject}}: resolved: {rule.type} sensors agree on {rule.measurement} within {{value}} "
                           "{unit} (clear ≤ {clear} {unit})", clear=clear)
    b.out.by_type[rule.type].append(r.NeighbourSpread(
        info, rule.measurement, groups, limit=rule.max_spread, clear=clear, max_age_s=rule.max_age_s,
        tracker=b.tracker))


def _coverage(b: _Builder, rule: rf.Coverage) -> None:
    groups: dict[Subject, dict[str, int]] = defaultdict(dict)
    for d in b.catalog.devices.values():
        if d.system in rule.systems:
            groups[b.site(d.site, d.system.value)][d.id] = round(rule.intervals * d.profile.reporting_interval_s * 1000)
    info = b.info(rule, "coverage", ",".join(s.value for s in rule.systems),
                  f"devices heard within {rule.intervals:g} x their interval < {100 * rule.min_ratio:g} %",
                  "{subject}: monitoring coverage {value} % below {threshold} % ({detail})", "%",
                  resolved="{subject}: resolved: monitoring coverage {value} % ({detail}), at or above the {clear} % "
                           "clear level", clear=100 * rule.min_ratio + 1)
    b.out.time_rules.append(r.CoverageRule(info, groups, min_ratio=rule.min_ratio, presence=b.out.presence,
                                           tracker=b.tracker, clock_start=b.out.clock_start))


def _completeness(b: _Builder, rule: rf.Completeness) -> None:
    members: dict[str, Subject] = {}
    expected: dict[Subject, float] = defaultdict(float)
    for d in b.catalog.devices.values():
        if d.system in rule.systems and d.profile.reporting_interval_s <= rule.max_interval_s:
            subject = members[d.id] = b.site(d.site, d.system.value)
            expected[subject] += rule.window_s / d.profile.reporting_interval_s
    info = b.info(rule, "completeness", ",".join(s.value for s in rule.systems),
                  f"readings received / expected over {rule.window_s:g} s < {100 * rule.min_ratio:g} % "
                  f"(devices reporting at least every {rule.max_interval_s:g} s)",
                  "{subject}: data completeness {value} % below {threshold} % ({detail})", "%",
                  resolved="{subject}: resolved: data completeness {value} % ({detail}), at or above the {clear} % "
                           "clear level", clear=100 * rule.min_ratio + 2)
    completeness = r.CompletenessRule(info, members, expected, window_s=rule.window_s, min_ratio=rule.min_ratio,
                                      tracker=b.tracker, clock_start=b.out.clock_start)
    b.out.every_reading.append(completeness.count)
    b.out.time_rules.append(completeness)


def _compile_file_rule(b: _Builder, rule: rf.FileRule) -> None:  # noqa: PLR0911 - one line per kind
    if isinstance(rule, rf.RateOfChange):
        return _rate(b, rule)
    if isinstance(rule, rf.FlatLine):
        return _flat(b, rule)
    if isinstance(rule, rf.Hampel):
        return _hampel(b, rule)
    if isinstance(rule, rf.Stale):
        return _stale(b, rule)
    if isinstance(rule, rf.Composite):
        return _composite(b, rule)
    if isinstance(rule, rf.NeighbourSpread):
        return _spread(b, rule)
    if isinstance(rule, rf.Coverage):
        return _coverage(b, rule)
    if isinstance(rule, rf.Completeness):
        return _completeness(b, rule)
    raise TypeError(f"no compiler for {type(rule).__name__}")  # ProfileLevels is handled before
