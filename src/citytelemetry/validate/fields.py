"""Per-measurement checks, compiled once per profile.

Each check precomputes its bounds in ``__init__`` and does the work in ``__call__`` (hot path:
no pydantic per message). A check returns the value with the Python type the profile fixes,
or raises ``FieldRejected`` with a reason code (``parse``); a value already of that type is
returned as the same object. ``plain``: every value the check passes is one the
line protocol writes as orjson does (``sink.line_protocol.plain_string``), so a reading whose checks
are all plain skips that test per field.

The checks share a native base class and a method (not ``__call__``) so that the validator calls them
through mypyc's vtable, not Python's generic call with its argument parsing (~320 instructions a field).
"""

from __future__ import annotations

from typing import cast

from citytelemetry.profiles.models import Measurement, ValueType
from citytelemetry.records import FieldValue, Reason
from citytelemetry.sink.line_protocol import INT64_MAX, INT64_MIN, plain_string


class FieldRejected(Exception):  # noqa: N818 - a signal, not an error of ours
    __slots__ = ("detail", "reason")

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class FieldCheck:
    __slots__ = ("key", "plain")

    def __init__(self, key: str, *, plain: bool) -> None:
        self.key, self.plain = key, plain

    def parse(self, value: object) -> FieldValue:
        raise NotImplementedError


class FloatCheck(FieldCheck):
    __slots__ = ("hi", "lo", "unit")

    def __init__(self, key: str, lo: float, hi: float, unit: str) -> None:
        super().__init__(key, plain=True)  # a JSON number is finite (decode.py), the range keeps it so
        self.lo, self.hi, self.unit = lo, hi, unit

    def parse(self, value: object) -> FieldValue:
        decoded: object = value  # kept as an object: mypyc re-boxes a narrowed float into a new one
        # bool is an int subclass in Python, but a JSON true is not a number.
        if type(value) is not float and type(value) is not int:
            raise FieldRejected(Reason.WRONG_TYPE, f"{self.key}: expected a number, got {_describe(value)}")
        number = float(value)
        if not self.lo <= number <= self.hi:
            raise FieldRejected(Reason.OUT_OF_RANGE,
                                f"{self.key}: {number} {self.unit} outside [{self.lo}, {self.hi}]")
        # A float is returned as the object it was decoded as (the validator then keeps the decoded
        # values without a copy); an integer becomes a float, as the profile fixes the field's type.
        return cast("FieldValue", decoded) if type(value) is float else number


class IntCheck(FieldCheck):
    __slots__ = ("hi", "lo", "unit")

    def __init__(self, key: str, lo: float, hi: float, unit: str) -> None:
        super().__init__(key, plain=False)  # line protocol integers carry an ``i``: the general path
        self.lo, self.hi, self.unit = lo, hi, unit

    def parse(self, value: object) -> FieldValue:
        if type(value) is not int:  # a float, even 3.0, would turn an integer field into a type conflict
            raise FieldRejected(Reason.WRONG_TYPE, f"{self.key}: expected an integer, got {_describe(value)}")
        if not self.lo <= value <= self.hi:
            raise FieldRejected(Reason.OUT_OF_RANGE,
                                f"{self.key}: {value} {self.unit} outside [{self.lo:g}, {self.hi:g}]")
        return value


class BoolCheck(FieldCheck):
    __slots__ = ()

    def __init__(self, key: str) -> None:
        super().__init__(key, plain=True)

    def parse(self, value: object) -> FieldValue:
        if type(value) is not bool:
            raise FieldRejected(Reason.WRONG_TYPE, f"{self.key}: expected true/false, got {_describe(value)}")
        return value


class EnumCheck(FieldCheck):
    __slots__ = ("allowed",)

    def __init__(self, key: str, allowed: tuple[str, ...]) -> None:
        super().__init__(key, plain=all(plain_string(state) for state in allowed))
        self.allowed = frozenset(allowed)

    def parse(self, value: object) -> FieldValue:
        if type(value) is not str:
            raise FieldRejected(Reason.WRONG_TYPE, f"{self.key}: expected a state name, got {_describe(value)}")
        if value not in self.allowed:
            raise FieldRejected(Reason.OUT_OF_RANGE,
                                f"{self.key}: {_describe(value)} is not one of {sorted(self.allowed)}")
        return value



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
