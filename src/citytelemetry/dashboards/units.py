"""Profile units and levels as Grafana field config: unit ids, threshold steps, state colours."""

from __future__ import annotations

from typing import Any

from citytelemetry.profiles.models import Measurement, ValueType

# Grafana's built-in unit ids; anything else is shown with its profile unit as a suffix.
_UNITS = {
    "": "none", "°C": "celsius", "%": "percent", "kW": "kwatt", "kWh": "kwatth", "V": "volt", "kV": "kvolt",
    "A": "amp", "Hz": "hertz", "m": "lengthm", "rpm": "rotrpm", "mg/m³": "conmgm3", "mg/Nm³": "conmgm3",
    "%RH": "humidity", "m³": "m3", "kvar": "kvoltampreact", "m/s": "velocityms",
}
OK, WARNING, CRITICAL = "green", "orange", "red"


def grafana_unit(unit: str) -> str:
    return _UNITS.get(unit, f"suffix: {unit}")


def steps(levels: list[tuple[float, str]], base: str) -> list[dict[str, Any]]:
    return [{"color": base, "value": None}, *({"color": c, "value": v} for v, c in levels)]


def threshold_steps(measurement: Measurement) -> list[dict[str, Any]]:
    """Ascending steps: red below low.critical, orange below low.warning, orange/red above high levels."""
    thresholds = measurement.thresholds
    if thresholds is None:
        return steps([], OK)
    levels: list[tuple[float, str]] = []
    base = OK
    low, high = thresholds.low, thresholds.high
    if low is not None:
        if low.critical is not None:
            base = CRITICAL
            levels.append((low.critical, WARNING if low.warning is not None else OK))
        if low.warning is not None:
            base = CRITICAL if low.critical is not None else WARNING
            levels.append((low.warning, OK))
    if high is not None:
        if high.warning is not None:
            levels.append((high.warning, WARNING))
        if high.critical is not None:
            levels.append((high.critical, CRITICAL))
    return steps(levels, base)


def state_mappings(measurement: Measurement) -> list[dict[str, Any]]:
    if measurement.value_type is ValueType.BOOL:
        options = {"true": {"color": "blue", "index": 0, "text": "true"},
                   "false": {"color": "text", "index": 1, "text": "false"}}
        return [{"type": "value", "options": options}]
    options = {}
    for index, state in enumerate(measurement.values):
        color = (CRITICAL if state in measurement.critical_values
                 else WARNING if state in measurement.warning_values else OK)
        options[state] = {"color": color, "index": index, "text": state}
    return [{"type": "value", "options": options}]


def describe(key: str, measurement: Measurement) -> str:
    """Panel description: the field, its unit and range, and every level with its source."""
    parts = [f"Field `{key}`: {measurement.description}."]
    if measurement.unit:
        parts.append(f"Unit {measurement.unit}.")
    if measurement.range is not None:
        parts.append(f"Physical range {measurement.range.min:g}…{measurement.range.max:g}.")
    if measurement.typical is not None:
        parts.append(f"Typical {measurement.typical.min:g}…{measurement.typical.max:g}.")
    if measurement.thresholds is not None:
        for side, level in (("low", measurement.thresholds.low), ("high", measurement.thresholds.high)):
            if level is not None:
                marks = [f"{name} {value:g}" for name, value in (("warning", level.warning),
                                                                 ("critical", level.critical)) if value is not None]
                parts.append(f"{side.capitalize()} {', '.join(marks)} ({level.source}).")
    if measurement.values:
        parts.append(f"States: {', '.join(measurement.values)}; warning: "
                     f"{', '.join(measurement.warning_values) or '-'}; critical: "
                     f"{', '.join(measurement.critical_values) or '-'}.")
    if measurement.source:
        parts.append(f"Source: {measurement.source}.")
    return " ".join(parts)
