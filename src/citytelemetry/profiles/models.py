"""Schema of the human-edited files in ``device_profiles/``: device-type profiles and the inventory.

Identifiers that end up in MQTT topics, InfluxDB measurement names, tag values or field keys are
restricted to ``[a-z0-9_-]`` (and ``.`` for location values) so no value can break a topic level
or the line protocol.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
DeviceId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
LocationValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]


class System(StrEnum):
    TUNNEL = "tunnel"
    STATION = "station"
    NETWORK = "network"


class ValueType(StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    ENUM = "enum"


# Location keys become InfluxDB tags: a closed list keeps cardinality bounded and names consistent.
LocationKey = Literal["cabin", "compartment", "km", "section", "zone", "unit", "node", "feeder", "building"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Span(Strict):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Threshold(Strict):
    """A warning and/or critical level on one side; ``source`` says where the figure comes from."""

    warning: float | None = None
    critical: float | None = None
    source: str = Field(min_length=3)

    @model_validator(mode="after")
    def _has_level(self) -> Self:
        if self.warning is None and self.critical is None:
            raise ValueError("give a warning or a critical level (or both)")
        return self


class Thresholds(Strict):
    low: Threshold | None = None
    high: Threshold | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        low, high = self.low, self.high
        if low and low.warning is not None and low.critical is not None and low.critical > low.warning:
            raise ValueError("low.critical must be at or below low.warning")
        if high and high.warning is not None and high.critical is not None and high.critical < high.warning:
            raise ValueError("high.critical must be at or above high.warning")
        return self


class Measurement(Strict):
    """One quantity a device reports: becomes one InfluxDB field of the type's measurement."""

    description: str = Field(min_length=3)
    value_type: ValueType
    unit: str = ""
    range: Span | None = None  # physical range: a value outside is rejected as out_of_range
    typical: Span | None = None  # normal operating band, used by simulators and dashboards
    thresholds: Thresholds | None = None
    values: tuple[Identifier, ...] = ()  # allowed states of an enum
    warning_values: tuple[Identifier, ...] = ()
    critical_values: tuple[Identifier, ...] = ()
    monotonic: bool = False  # cumulative register (meters): never decreases
    source: str | None = None  # where the range or state list comes from

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        numeric = self.value_type in (ValueType.FLOAT, ValueType.INT)
        if numeric and self.range is None:
            raise ValueError("numeric measurements need a physical range")
        if not numeric and (self.range or self.thresholds or self.typical):
            raise ValueError(f"range, typical and thresholds apply to numbers, not to {self.value_type}")
        if self.value_type is ValueType.ENUM:
            if len(self.values) < 2:
                raise ValueError("an enum needs at least two values")
            unknown = set(self.warning_values) | set(self.critical_values)
            unknown -= set(self.values)
            if unknown:
                raise ValueError(f"warning/critical values not among values: {sorted(unknown)}")
        elif self.values or self.warning_values or self.critical_values:
            raise ValueError("values/warning_values/critical_values apply to enums only")
        span, typical = self.range, self.typical
        if span and typical and (typical.min < span.min or typical.max > span.max):
            raise ValueError("typical band must lie inside the physical range")
        return self


class DeviceProfile(Strict):
    """A device type: what it measures, how often, within which limits."""

    type: Identifier  # also the InfluxDB measurement name
    system: System
    description: str = Field(min_length=3)
    reporting_interval_s: float = Field(gt=0, le=86_400)
    measurements: dict[Identifier, Measurement] = Field(min_length=1)

    @model_validator(mode="after")
    def _reserved_keys(self) -> Self:
        if "seq" in self.measurements:
            raise ValueError("'seq' is reserved for the device sequence number stored with every point")
        return self


class Device(Strict):
    id: DeviceId
    type: Identifier
    site: DeviceId | None = None  # defaults to the file's site
    location: dict[LocationKey, LocationValue] = Field(default_factory=dict)
    description: str | None = None


class InventoryFile(Strict):
    """One file of the inventory: the devices of one system at one site."""

    site: DeviceId
    system: System
    devices: list[Device] = Field(min_length=1)
