"""What a rollup holds, derived from the device profiles: the aggregates of every field of every type.

A rollup of device type ``T`` in tier ``R`` is five measurements in retention policy ``R``: ``T_min``,
``T_max``, ``T_mean``, ``T_last`` and ``T_count``, each with the raw field names and the raw tags. One
measurement per aggregate keeps each field's type fixed per measurement (a count is an integer, a mean a
float, the last state a string), and lets one InfluxQL text read raw or rollup alike:
``max("temperature") FROM "$rp"./^T(_max)?$/`` (docs/storage.md).

Numbers (and the reserved ``seq``) get all five aggregates; states (enums, booleans) only ``last`` and
``count``: InfluxQL has no min or mean of a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from citytelemetry.profiles import Catalog
from citytelemetry.profiles.models import ValueType
from citytelemetry.sink.line_protocol import SEQ_FIELD


class Aggregate(StrEnum):
    MIN = "min"
    MAX = "max"
    MEAN = "mean"
    LAST = "last"
    COUNT = "count"


NUMERIC_AGGREGATES = (Aggregate.MIN, Aggregate.MAX, Aggregate.MEAN, Aggregate.LAST, Aggregate.COUNT)
STATE_AGGREGATES = (Aggregate.LAST, Aggregate.COUNT)


class Kind(StrEnum):
    """How a value is written in line protocol: InfluxQL's JSON says ``20`` for the float 20.0."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STRING = "string"


_KIND_OF = {ValueType.FLOAT: Kind.FLOAT, ValueType.INT: Kind.INT, ValueType.BOOL: Kind.BOOL,
            ValueType.ENUM: Kind.STRING}


def rollup_measurement(measurement: str, aggregate: Aggregate) -> str:
    return f"{measurement}_{aggregate.value}"


@dataclass(frozen=True, slots=True)
class FieldRollup:
    name: str
    kind: Kind  # of the raw field
    unit: str

    @property
    def aggregates(self) -> tuple[Aggregate, ...]:
        return NUMERIC_AGGREGATES if self.kind in (Kind.FLOAT, Kind.INT) else STATE_AGGREGATES

    def kind_of(self, aggregate: Aggregate) -> Kind:
        """The type of the aggregate's value: counts are integers, means floats, the rest as raw."""
        if aggregate is Aggregate.COUNT:
            return Kind.INT
        if aggregate is Aggregate.MEAN:
            return Kind.FLOAT
        return self.kind


@dataclass(frozen=True, slots=True)
class MeasurementRollup:
    """The rollup of one device type: its fields in profile order, then ``seq``."""

    measurement: str
    fields: tuple[FieldRollup, ...]

    def columns(self) -> list[tuple[FieldRollup, Aggregate]]:
        """The (field, aggregate) of each column of ``select_list``, in order."""
        return [(f, a) for f in self.fields for a in f.aggregates]

    def select_list(self) -> str:
        return ", ".join(f'{a.value}("{f.name}")' for f, a in self.columns())


def rollup_schema(catalog: Catalog) -> dict[str, MeasurementRollup]:
    """Every device type's rollup; refuses a type whose rollup names would collide with another type."""
    schema: dict[str, MeasurementRollup] = {}
    for name, profile in sorted(catalog.profiles.items()):
        fields = [FieldRollup(key, _KIND_OF[m.value_type], m.unit) for key, m in profile.measurements.items()]
        fields.append(FieldRollup(SEQ_FIELD, Kind.INT, ""))
        schema[name] = MeasurementRollup(name, tuple(fields))
    clashes = sorted(rollup_measurement(t, a) for t in schema for a in Aggregate
                     if rollup_measurement(t, a) in schema)
    if clashes:
        raise ValueError(f"device types named like rollup measurements: {clashes}; rename them")
    return schema


def units(schema: Mapping[str, MeasurementRollup], measurement: str) -> dict[str, str]:
    return {f.name: f.unit for f in schema[measurement].fields}
