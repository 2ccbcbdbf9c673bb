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


# Finite numbers only; strict so that YAML `true` is not read as 1.0.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class Span(Strict):
    min: Number
    max: Number

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Threshold(Strict):
    """A warning and/or critical level on one side; ``source`` says where the figure comes from."""

    warning: Number | None = None
    critical: Number | None = None
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


class Sensor(Strict):
    """How finely and how steadily the instrument reads at steady conditions.

    The alert rules derive their bands from it (see docs/alerting.md, "Bands from the sensor"): a
    threshold clears ``6 x noise + resolution`` past its level at least (no reading a true value at the
    level can give both trips and clears it), and a flat line needs enough repeats of one reported step
    that a healthy sensor of this noise cannot produce them by chance.
    """

    resolution: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]  # smallest step it reports
    noise: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]  # standard deviation of a healthy reading
    source: str = Field(min_length=3)


NOISE_SIGMAS = 3.0  # a healthy reading stays within +-3 standard deviations of the true value


def noise_band(sensor: Sensor) -> float:
    """Width a clear band needs so that readings of one true value cannot both trip and clear it."""
    return 2 * NOISE_SIGMAS * sensor.noise + sensor.resolution


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
    sensor: Sensor | None = None  # resolution and noise of the instrument: the alert bands come from it

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        numeric = self.value_type in (ValueType.FLOAT, ValueType.INT)
        if numeric and self.range is None:
            raise ValueError("numeric measurements need a physical range")
        if not numeric and (self.range or self.thresholds or self.typical or self.sensor):
            raise ValueError(f"range, typical, thresholds and sensor apply to numbers, not to {self.value_type}")
        if self.monotonic and not numeric:
            raise ValueError("monotonic applies to numeric counters only")
        if self.value_type is ValueType.ENUM:
            self._check_states()
        elif self.values or self.warning_values or self.critical_values:
            raise ValueError("values/warning_values/critical_values apply to enums only")
        span, typical = self.range, self.typical
        if span and typical and (typical.min < span.min or typical.max > span.max):
            raise ValueError("typical band must lie inside the physical range")
        if span and self.thresholds:
            self._check_levels(span, typical, self.thresholds)
            if self.sensor and typical:
                self._check_noise(typical, self.thresholds, self.sensor)
        return self

    @staticmethod
    def _check_noise(typical: Span, thresholds: Thresholds, sensor: Sensor) -> None:
        """The noise band must fit between each level and the typical band, or the alert could not clear
        in normal operation (or the levels are closer to normal than the instrument can tell)."""
        band = noise_band(sensor)
        for side, threshold, edge in (("low", thresholds.low, typical.min), ("high", thresholds.high, typical.max)):
            for name in ("warning", "critical"):
                level = getattr(threshold, name) if threshold else None
                if level is not None and band >= abs(edge - level):
                    raise ValueError(f"thresholds.{side}.{name} {level} lies {abs(edge - level):g} from the typical "
                                     f"band, within the sensor's noise band {band:g} (6 x noise + resolution): "
                                     "it could not clear in normal operation")

    def _check_states(self) -> None:
        both = set(self.warning_values) & set(self.critical_values)
        if both:
            raise ValueError(f"states both warning and critical: {sorted(both)}")
        if len(self.values) < 2:
            raise ValueError("an enum needs at least two values")
        unknown = (set(self.warning_values) | set(self.critical_values)) - set(self.values)
        if unknown:
            raise ValueError(f"warning/critical values not among values: {sorted(unknown)}")

    @staticmethod
    def _check_levels(span: Span, typical: Span | None, thresholds: Thresholds) -> None:
        """Levels must be reachable (inside the range) and leave normal operation (typical) quiet."""
        low, high = thresholds.low, thresholds.high
        for side, threshold in (("low", low), ("high", high)):
            for name in ("warning", "critical"):
                level = getattr(threshold, name) if threshold else None
                if level is not None and not span.min <= level <= span.max:
                    raise ValueError(f"thresholds.{side}.{name} {level} lies outside the range "
                                     f"[{span.min}, {span.max}]: it could never fire")
        low_edge = max((v for v in (low.warning, low.critical) if v is not None), default=None) if low else None
        high_edge = min((v for v in (high.warning, high.critical) if v is not None), default=None) if high else None
        if low_edge is not None and high_edge is not None and low_edge >= high_edge:
            raise ValueError(f"low levels ({low_edge}) must lie below high levels ({high_edge})")
        if typical and low_edge is not None and typical.min <= low_edge:
            raise ValueError(f"typical.min {typical.min} is at or below the low level {low_edge}: normal would alarm")
        if typical and high_edge is not None and typical.max >= high_edge:
            raise ValueError(f"typical.max {typical.max} is at or above the high level {high_edge}: normal would alarm")


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
        if "time" in self.measurements:  # influxd drops a field named time without an error (measured, 1.6)
            raise ValueError("'time' cannot be a measurement: InfluxDB keeps no field of that name")
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
