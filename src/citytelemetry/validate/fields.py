"""Per-measurement checks, compiled once per profile.

Each check precomputes its bounds in ``__init__`` and does the work in ``__call__`` (hot path:
no pydantic per message). A check returns the value with the Python type the profile fixes,
or raises ``FieldRejected`` with a reason code.
"""

from __future__ import annotations

from citytelemetry.profiles.models import Measurement, ValueType
from citytelemetry.records import FieldValue, Reason
from citytelemetry.sink.line_protocol import INT64_MAX, INT64_MIN


class FieldRejected(Exception):  # noqa: N818 - a signal, not an error of ours
    __slots__ = ("detail", "reason")

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class FloatCheck:
    __slots__ = ("hi", "key", "lo", "unit")

    def __init__(self, key: str, lo: float, hi: float, unit: str) -> None:
        self.key, self.lo, self.hi, self.unit = key, lo, hi, unit

    def __call__(self, value: object) -> FieldValue:
        # bool is an int subclass in Python, but a JSON true is not a number.
        if type(value) is not float and type(value) is not int:
            raise FieldRejected(Reason.WRONG_TYPE, f"{self.key}: expected a number, got {_describe(value)}")
        number = float(value)
        if not self.lo <= number <= self.hi:
            raise FieldRejected(Reason.OUT_OF_RANGE,
                                f"{self.key}: {number} {self.unit} outside [{self.lo}, {self.hi}]")
        return number


class IntCheck:
    __slots__ = ("hi", "key", "lo", "unit")

    def __init__(self, key: str, lo: float, hi: float, unit: str) -> None:
        self.key, self.lo, self.hi, self.unit = key, lo, hi, unit

    def __call__(self, value: object) -> FieldValue:
        if type(value) is not int:  # a float, even 3.0, would turn an integer field into a type conflict
            raise FieldRejected(Reason.WRONG_TYPE, f"{self.key}: expected an integer, got {_describe(value)}")
        if not self.lo <= value <= self.hi:
            raise FieldRejected(Reason.OUT_OF_RANGE,
                                f"{self.key}: {value} {self.unit} outside [{self.lo:g}, {self.hi:g}]")
        return value


class BoolCheck:
    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, value: object) -> FieldValue:
        if type(value) is not bool:
            raise FieldRejected(Reason.WRONG_TYPE, f"{self.key}: expected true/false, got {_describe(value)}")
        return value


class EnumCheck:
    __slots__ = ("allowed", "key")

    def __init__(self, key: str, allowed: tuple[str, ...]) -> None:
        self.key, self.allowed = key, frozenset(allowed)

    def __call__(self, value: object) -> FieldValue:
        if type(value) is not str:
            raise FieldRejected(Reason.WRONG_TYPE, f"{self.key}: expected a state name, got {_describe(value)}")
        if value not in self.allowed:
            raise FieldRejected(Reason.OUT_OF_RANGE,
                                f"{self.key}: {_describe(value)} is not one of {sorted(self.allowed)}")
        return value


FieldCheck = FloatCheck | IntCheck | BoolCheck | EnumCheck


def compile_check(key: str, measurement: Measurement) -> FieldCheck:
    kind = measurement.value_type
    if kind is ValueType.BOOL:
        return BoolCheck(key)
    if kind is ValueType.ENUM:
        return EnumCheck(key, measurement.values)
    span = measurement.range
    if span is None:  # the profile schema guarantees a range for numbers
        raise ValueError(f"{key}: numeric measurement without range")
    if kind is ValueType.INT:  # stored as a 64-bit integer field: a wider profile range cannot widen that
        return IntCheck(key, max(span.min, INT64_MIN), min(span.max, INT64_MAX), measurement.unit)
    return FloatCheck(key, span.min, span.max, measurement.unit)
