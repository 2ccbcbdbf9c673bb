"""Realistic, reproducible values for one device, derived from nothing but its profile.

Each device owns a few latent signals in [0, 1] -- plant load, sunshine, wind, ambient temperature --
and each measurement follows one of them, so quantities that move together in a plant move together
here (CHP gas flow, heat and exhaust temperature all follow electrical load; PV power follows
irradiance). Derived quantities are computed, not sampled: COP = heat out / electricity in, and meters
integrate their power over simulated time. Every value is mapped into the measurement's normal band
(the ``typical`` band, kept clear of alert thresholds, inside the physical range), so normal operation
never raises an alert or a rejection.

Everything depends only on the seed, the device id and simulated time, never on the wall clock:
the same inputs give the same values, bit for bit.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from citytelemetry.profiles.models import DeviceProfile, Measurement, ValueType
from citytelemetry.records import FieldValue

UTC_OFFSET_H = 8  # the pilot district is in Shenyang (UTC+8): daily cycles follow local time
NOISE = 0.01  # white measurement noise, as a fraction of the normal band

# Latent signals a measurement can follow ("own" = an independent slow wander of its own).
LOAD, SUN, WIND, WIND_POWER, AMBIENT, MODULE, PROCESS = (
    "load", "sun", "wind", "wind_power", "ambient", "module", "process")
OWN = "own"

_POWER_UNITS = {"w", "kw", "mw", "var", "kvar", "mvar", "va", "kva", "mva"}
_TEMPERATURE_UNITS = {"c", "°c", "degc", "celsius", "k"}
_LOAD_KEYS = re.compile(r"power|load|flow|gas|heat|cool|current|charg|_kw$|^p_|_p$")
_HOT_PROCESS_KEYS = re.compile(r"exhaust|flue|oil|winding|jacket|cable")
_SOLAR = re.compile(r"pv|solar|photovolt")
_COP = re.compile(r"(^|_)cop($|_)")
_OUTPUT = re.compile(r"heat|cool|therm|output|q_")
_TRUE_BY_DEFAULT = re.compile(r"running|enabled|available|online|closed|(^|_)ok($|_)|(^|_)on$")
_OFF_STATES = frozenset({"off", "stopped", "idle", "standby"})
_GATED_KEYS = re.compile(r"current|frequency|rpm")  # what a stopped pump or fan no longer draws or turns
# A small offset per statistic keeps a zone's maximum above its mean and its mean above its minimum.
_BIAS = ((re.compile(r"(^|_)max($|_)"), 0.04), (re.compile(r"(^|_)min($|_)"), -0.04))


def normal_unit(unit: str) -> str:
    return unit.strip().lower().replace("³", "3").replace("²", "2").replace(" ", "")


def local_hour(ts_ms: int) -> float:
    return (ts_ms / 3_600_000 + UTC_OFFSET_H) % 24


class _Wander:
    """Ornstein-Uhlenbeck noise: a slow, mean-reverting drift that is exact for any time step."""

    __slots__ = ("sigma", "tau_s", "x")

    def __init__(self, sigma: float, tau_s: float, rng: random.Random) -> None:
        self.sigma, self.tau_s = sigma, tau_s
        self.x = rng.gauss(0.0, sigma)

    def step(self, rng: random.Random, dt_s: float) -> float:
        a = math.exp(-dt_s / self.tau_s)
        self.x = self.x * a + math.sqrt(1.0 - a * a) * self.sigma * rng.gauss(0.0, 1.0)
        return self.x


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else min(x, hi)


class Latents:
    """The shared signals of one device, advanced together at each reading."""

    __slots__ = ("_ambient", "_cloud", "_load", "_process", "_wind")

    def __init__(self, rng: random.Random) -> None:
        self._load = _Wander(0.08, 900.0, rng)
        self._cloud = _Wander(0.12, 1200.0, rng)
        self._wind = _Wander(0.15, 1800.0, rng)
        self._ambient = _Wander(0.06, 3600.0, rng)
        self._process = _Wander(0.1, 1800.0, rng)

    def at(self, ts_ms: int, dt_s: float, rng: random.Random) -> dict[str, float]:
        h = local_hour(ts_ms)
        # Demand: an evening peak and a smaller morning one, as in district heat and power.
        daily = 0.55 + 0.2 * math.cos(2 * math.pi * (h - 18) / 24) + 0.1 * math.cos(2 * math.pi * (h - 9) / 12)
        load = _clip(daily + self._load.step(rng, dt_s), 0.02, 0.98)
        clear_sky = max(0.0, math.sin(math.pi * (h - 6) / 12)) ** 1.2 if 6 < h < 18 else 0.0
        sun = clear_sky * _clip(0.85 + self._cloud.step(rng, dt_s), 0.2, 1.0)
        wind = _clip(0.45 + 0.15 * math.cos(2 * math.pi * (h - 15) / 24) + self._wind.step(rng, dt_s), 0.0, 1.0)
        # Cubic power curve between cut-in (~0.1 of the band) and rated speed (~0.7).
        wind_power = _clip((wind - 0.1) / 0.6, 0.0, 1.0) ** 3
        ambient = _clip(0.5 + 0.3 * math.cos(2 * math.pi * (h - 15) / 24) + self._ambient.step(rng, dt_s), 0.0, 1.0)
        module = _clip(0.35 + 0.25 * (ambient - 0.5) + 0.45 * sun, 0.0, 1.0)  # ambient, heated by the sun
        # One level for a device's water temperatures: supply stays above return, top of a tank above bottom.
        process = _clip(0.5 + self._process.step(rng, dt_s), 0.05, 0.95)
        return {LOAD: load, SUN: sun, WIND: wind, WIND_POWER: wind_power, AMBIENT: ambient, MODULE: module,
                PROCESS: process}


@dataclass(frozen=True, slots=True)
class Band:
    """Where a numeric measurement stays in normal operation, and how it is rounded."""

    lo: float
    hi: float
    is_int: bool
    decimals: int

    def fit(self, value: float) -> float | int:
        value = _clip(value, self.lo, self.hi)
        if self.is_int:
            return int(_clip(round(value), self.lo, self.hi))
        # Rounding may step just outside the band; the unrounded value is then kept.
        rounded = round(value, self.decimals)
        return float(rounded) if self.lo <= rounded <= self.hi else float(value)

    def at(self, x: float) -> float | int:
        return self.fit(self.lo + (self.hi - self.lo) * x)


def _clear_of_thresholds(lo: float, hi: float, m: Measurement) -> tuple[float, float]:
    if m.thresholds is None or m.monotonic:
        return lo, hi
    margin = 0.01 * (hi - lo)
    clear_lo, clear_hi = lo, hi
    if (low := m.thresholds.low) is not None:
        clear_lo = max(lo, max(v for v in (low.warning, low.critical) if v is not None) + margin)
    if (high := m.thresholds.high) is not None:
        clear_hi = min(hi, min(v for v in (high.warning, high.critical) if v is not None) - margin)
    # If the typical band itself crosses a threshold the profile is odd; its typical band wins.
    return (clear_lo, clear_hi) if clear_lo <= clear_hi else (lo, hi)


def _decimals(m: Measurement, lo: float, hi: float) -> int:
    if m.value_type is ValueType.INT:
        return 0
    if m.sensor is not None:  # the instrument's own steps (profile `sensor.resolution`)
        return max(0, math.ceil(-math.log10(m.sensor.resolution) - 1e-9))
    if m.monotonic:
        return 3  # meters: fine enough that every reading's increment shows
    # About three significant digits across the band: 21.3 degC, 0.915 PF, 845.0 kW.
    span = (m.typical.max - m.typical.min) if m.typical is not None else (hi - lo)
    return int(_clip(2 - math.floor(math.log10(span)), 0, 6)) if span > 0 else 3


def _noise(m: Measurement, band: Band) -> float:
    """White noise as a fraction of the band: the profile's sensor noise when it gives one."""
    span = band.hi - band.lo
    return m.sensor.noise / span if m.sensor is not None and span > 0 else NOISE


def normal_band(m: Measurement) -> Band:
    """The typical band (or the lower part of the range), clear of alert thresholds, inside the range."""
    if m.range is None:
        raise ValueError("numeric measurements need a range")
    rlo, rhi = m.range.min, m.range.max
    if m.typical is not None:
        lo, hi = m.typical.min, m.typical.max
    elif m.monotonic:
        lo, hi = rlo, rhi
    else:
        lo, hi = rlo + 0.1 * (rhi - rlo), rlo + 0.5 * (rhi - rlo)
    lo, hi = _clear_of_thresholds(lo, hi, m)
    lo, hi = max(lo, rlo), min(hi, rhi)
    is_int = m.value_type is ValueType.INT
    if is_int:
        ilo, ihi = math.ceil(lo), math.floor(hi)
        if ilo > ihi:  # no integer in the band: the nearest one inside the range
            ilo = ihi = int(_clip(round((lo + hi) / 2), math.ceil(rlo), math.floor(rhi)))
        lo, hi = float(ilo), float(ihi)
    return Band(lo, hi, is_int, _decimals(m, lo, hi))


def _plant_driver(kind: str, key: str, unit: str, powerish: bool) -> str | None:
    """Solar and wind plants: their output follows the weather, not the demand."""
    if "irradiance" in key or unit in {"w/m2", "kw/m2"}:
        return SUN
    if _SOLAR.search(kind):
        if "module" in key or "panel" in key:
            return MODULE
        return SUN if powerish else None
    if "wind" in kind:
        if "wind" in key or unit == "m/s" or "rpm" in key:
            return WIND
        return WIND_POWER if powerish else None
    return None


def driver_of(key: str, m: Measurement, profile: DeviceProfile) -> str:
    """Which latent signal a numeric measurement follows, guessed from its key, unit and device type."""
    unit = normal_unit(m.unit)
    powerish = unit in _POWER_UNITS or unit == "a" or bool(_LOAD_KEYS.search(key))
    plant = _plant_driver(f"{profile.type} {profile.description}".lower(), key, unit, powerish)
    if plant is not None:
        return plant
    if unit in _TEMPERATURE_UNITS:
        if _HOT_PROCESS_KEYS.search(key):
            return LOAD
        return AMBIENT if profile.system == "tunnel" or "ambient" in key or "outdoor" in key else PROCESS
    return LOAD if powerish and not _COP.search(key) else OWN


class _Numeric:
    """A numeric measurement that follows a latent signal, plus its own white noise."""

    __slots__ = ("band", "bias", "driver", "key", "noise", "own")

    def __init__(self, key: str, band: Band, driver: str, rng: random.Random, noise: float = NOISE) -> None:
        self.key, self.band, self.driver, self.noise = key, band, driver, noise
        self.bias = sum(offset for pattern, offset in _BIAS if pattern.search(key))
        self.own = _Wander(0.1, 1800.0, rng)

    def __call__(self, latents: dict[str, float], dt_s: float, rng: random.Random) -> float | int:
        x = _clip(0.5 + self.own.step(rng, dt_s), 0.05, 0.95) if self.driver == OWN else latents[self.driver]
        noise = rng.gauss(0.0, self.noise)
        if self.driver in (SUN, WIND_POWER):  # no output, no noise: a PV inverter reads 0 kW at night
            noise *= x
        return self.band.at(x + self.bias + noise)


# Energy units per (partner unit x second).
_METER_FACTORS = {
    ("kwh", "kw"): 1 / 3600, ("kwh", "mw"): 1000 / 3600, ("kwh", "w"): 1 / 3_600_000,
    ("mwh", "kw"): 1 / 3_600_000, ("mwh", "mw"): 1 / 3600,
    ("gj", "kw"): 1e-6, ("gj", "mw"): 1e-3, ("mj", "kw"): 1e-3,
    ("m3", "m3/h"): 1 / 3600, ("m3", "nm3/h"): 1 / 3600, ("t", "t/h"): 1 / 3600,
}


class _Meter:
    """A cumulative register: integrates a power/flow of the same device over simulated time."""

    __slots__ = ("band", "factor", "key", "partner", "total")

    def __init__(self, key: str, band: Band, partner: str | None, factor: float, rng: random.Random) -> None:
        self.key, self.band, self.partner, self.factor = key, band, partner, factor
        self.total = band.lo + rng.uniform(0.0, 1e-4) * (band.hi - band.lo)  # a register some years old

    @classmethod
    def build(cls, key: str, m: Measurement, band: Band, numeric: dict[str, _Numeric],
              units: dict[str, str], rng: random.Random) -> _Meter:
        unit = normal_unit(m.unit)
        for other, field in numeric.items():
            factor = _METER_FACTORS.get((unit, units[other]))
            if factor is not None and field.driver != OWN:
                return cls(key, band, other, factor, rng)
        # No rate to integrate: grow by about a tenth of the band per year at full load.
        return cls(key, band, None, 0.1 * (band.hi - band.lo) / (365 * 86_400), rng)

    def __call__(self, values: dict[str, FieldValue], latents: dict[str, float], dt_s: float) -> float | int:
        rate = values[self.partner] if self.partner is not None else latents[LOAD]
        self.total += max(0.0, float(rate)) * self.factor * dt_s
        # Truncation, rounding and clipping are all non-decreasing, so the register never goes back.
        if self.band.is_int:
            return int(_clip(math.floor(self.total), self.band.lo, self.band.hi))
        return self.band.fit(self.total)


class _Cop:
    """COP = output power / input power, kept inside the COP band by adjusting the input."""

    __slots__ = ("cop", "electric", "output", "target")

    def __init__(self, cop: tuple[str, Band], output: str, electric: tuple[str, Band],
                 rng: random.Random) -> None:
        self.cop, self.output, self.electric = cop, output, electric
        self.target = _Numeric(cop[0], cop[1], OWN, rng)

    def __call__(self, values: dict[str, FieldValue], latents: dict[str, float], dt_s: float,
                 rng: random.Random) -> None:
        target = float(self.target(latents, dt_s, rng))
        output = float(values[self.output])
        electric = self.electric[1].fit(output / target if target > 0 else self.electric[1].hi)
        values[self.electric[0]] = electric
        values[self.cop[0]] = self.cop[1].fit(output / electric if electric > 0 else target)


class _State:
    """A bool or enum that sits in a normal state and rarely switches to another normal one."""

    __slots__ = ("home", "key", "normal", "state")

    def __init__(self, key: str, m: Measurement) -> None:
        self.key = key
        if m.value_type is ValueType.BOOL:
            home: FieldValue = bool(_TRUE_BY_DEFAULT.search(key))
            self.normal: tuple[FieldValue, ...] = (home, not home)
        else:
            alarming = set(m.warning_values) | set(m.critical_values)
            # Alarm states stay out of normal operation, like numeric values stay clear of thresholds.
            self.normal = tuple(v for v in m.values if v not in alarming) or (m.values[0],)
        self.home = self.state = self.normal[0]

    def __call__(self, rng: random.Random) -> FieldValue:
        r = rng.random()
        if self.state != self.home and r < 0.1:
            self.state = self.home
        elif len(self.normal) > 1 and r > 0.999:
            self.state = rng.choice(self.normal[1:])
        return self.state


class DeviceModel:
    """The values of one device at non-decreasing simulated times: ``sample(ts_ms)``."""

    __slots__ = ("_cop", "_gates", "_keys", "_last_ms", "_latents", "_meters", "_numeric", "_rng", "_states")

    def __init__(self, profile: DeviceProfile, seed: int, device_id: str) -> None:
        # A string seed is hashed with SHA-512 by `random`: stable across runs and processes.
        self._rng = rng = random.Random(f"{seed}:values:{device_id}")
        self._latents = Latents(rng)
        self._keys = tuple(profile.measurements)
        self._numeric: dict[str, _Numeric] = {}
        self._meters: list[_Meter] = []
        self._states: list[_State] = []
        units = {k: normal_unit(m.unit) for k, m in profile.measurements.items()}
        bands: dict[str, Band] = {}
        for key, m in profile.measurements.items():
            if m.value_type in (ValueType.FLOAT, ValueType.INT):
                bands[key] = normal_band(m)
                if not m.monotonic:
                    self._numeric[key] = _Numeric(key, bands[key], driver_of(key, m, profile), rng,
                                                  _noise(m, bands[key]))
            else:
                self._states.append(_State(key, m))
        for key, m in profile.measurements.items():
            if m.monotonic and key in bands:
                self._meters.append(_Meter.build(key, m, bands[key], self._numeric, units, rng))
        self._cop = self._find_cop(bands, units, rng)
        self._gates = self._find_gates()
        self._last_ms: int | None = None

    def _find_gates(self) -> list[tuple[str, tuple[_Numeric, ...]]]:
        """A state such as ``pump1_state`` that can be off, and what it stops (``pump1_current``)."""
        gates = []
        for state in self._states:
            match = re.fullmatch(r"(.*?)(state|mode)", state.key)
            if match is None or not _OFF_STATES & {str(v) for v in state.normal}:
                continue
            gated = tuple(f for k, f in self._numeric.items() if k.startswith(match[1])
                          and (f.driver in (LOAD, WIND_POWER) or _GATED_KEYS.search(k)))
            gates.append((state.key, gated))
        return gates

    def _find_cop(self, bands: dict[str, Band], units: dict[str, str], rng: random.Random) -> _Cop | None:
        cops = [k for k in self._numeric if _COP.search(k)]
        power = [k for k in self._numeric if units[k] in _POWER_UNITS and k not in cops]
        outputs = [k for k in power if _OUTPUT.search(k)]
        inputs = [k for k in power if not _OUTPUT.search(k)]
        if not (cops and outputs and inputs):
            return None
        return _Cop((cops[0], bands[cops[0]]), outputs[0], (inputs[0], bands[inputs[0]]), rng)

    def sample(self, ts_ms: int) -> dict[str, FieldValue]:
        if self._last_ms is not None and ts_ms < self._last_ms:
            raise ValueError(f"simulated time went back: {ts_ms} < {self._last_ms}")
        dt_s = 0.0 if self._last_ms is None else (ts_ms - self._last_ms) / 1000
        dt_step = max(dt_s, 1.0)  # the latents need a positive step; meters use the true dt
        self._last_ms = ts_ms
        rng = self._rng
        latents = self._latents.at(ts_ms, dt_step, rng)
        values: dict[str, FieldValue] = {k: f(latents, dt_step, rng) for k, f in self._numeric.items()}
        for state in self._states:
            values[state.key] = state(rng)
        for key, gated in self._gates:
            if values[key] in _OFF_STATES:  # a stopped machine draws nothing: the bottom of the band
                for f in gated:
                    values[f.key] = f.band.at(0.0)
        if self._cop is not None:
            self._cop(values, latents, dt_step, rng)
        for meter in self._meters:
            values[meter.key] = meter(values, latents, dt_s)
        return {k: values[k] for k in self._keys}
