"""Incidents on top of normal operation: what the alert rules are tested against.

A scenario is a few *effects*, each on one device of the shipped inventory over a span of simulated
time (seconds from the start of the run): its values are overridden (a ramp, a stuck value, a state),
or it goes silent, optionally with a retained "offline" status as its last will and a birth when it
returns. Everything else stays normal, and every value stays inside the profile's physical range, so
the pipeline accepts all of it: only the alert rules should notice.

    DistrictSimulator(catalog, scenario=SCENARIOS["gas_leak"], duration_s=SCENARIOS["gas_leak"].span_s + 60)
    python -m simulators --scenario gas_leak --speed 20

The expected pages of each scenario are listed in docs/alerting.md and asserted by
tests/integration/test_alerting_scenarios.py.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from citytelemetry.profiles.catalog import Catalog, RegisteredDevice
from citytelemetry.records import FieldValue
from citytelemetry.topics import status_topic
from simulators.faults import encode

if TYPE_CHECKING:
    from simulators.generate import DistrictSimulator, SimMessage
    from simulators.values import DeviceModel

Values = dict[str, FieldValue]
Change = Callable[[float, Values], Values]  # (seconds since the effect began, normal values) -> values
ONSET_S = 60.0  # every scenario starts after a minute of normal operation (rule windows fill up)


def ramp(*points: tuple[float, float]) -> Callable[[float], float]:
    """Piecewise linear through (seconds since the effect began, value); flat after the last point."""
    def at(t: float) -> float:
        if t <= points[0][0]:
            return points[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(points):
            if t <= t1:
                return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return points[-1][1]
    return at


def setting(**fixed: FieldValue) -> Change:
    """Fixed values (states, zeros) for the whole effect."""
    return lambda _t, values: {**values, **fixed}


def following(key: str, curve: Callable[[float], float], decimals: int = 2, **fixed: FieldValue) -> Change:
    """``key`` follows ``curve``; other keys fixed."""
    return lambda t, values: {**values, **fixed, key: round(curve(t), decimals)}


@dataclass(frozen=True, slots=True)
class Effect:
    device: str
    start_s: float
    end_s: float
    change: Change | None = None
    silent: bool = False
    last_will: bool = False  # silent with a retained "offline" at the start and a birth at the end

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


class _Stuck:
    """The first value seen in the effect, repeated: a frozen sensor."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.value: FieldValue | None = None

    def __call__(self, _t: float, values: Values) -> Values:
        if self.value is None:
            self.value = values[self.key]
        return {**values, self.key: self.value}


class _Drift:
    """A reading that drifts from the true value to ``target`` over ``over_s`` and stays there."""

    def __init__(self, key: str, target: float, over_s: float) -> None:
        self.key, self.target, self.over_s = key, target, over_s

    def __call__(self, t: float, values: Values) -> Values:
        true = float(values[self.key])
        share = min(1.0, t / self.over_s)
        return {**values, self.key: round(true + (self.target - true) * share, 3)}


EffectsOf = Callable[[Sequence[RegisteredDevice]], tuple[Effect, ...]]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    effects_of: EffectsOf = field(compare=False)  # the effects, given the devices of the run
    scope: Callable[[Catalog], set[str]] = field(compare=False)  # the devices a focused run needs
    span_s: float = 0.0  # simulated seconds from the start of the run to the end of the last effect

    def effects(self, devices: Sequence[RegisteredDevice]) -> tuple[Effect, ...]:
        effects = self.effects_of(devices)
        missing = {e.device for e in effects} - {d.id for d in devices}
        if missing:
            raise ValueError(f"scenario {self.name!r} needs devices not in this run: {sorted(missing)}")
        return effects

    def focus(self, catalog: Catalog) -> Catalog:
        """A catalog of only the devices this scenario needs (its compartment, unit or system)."""
        keep = self.scope(catalog)
        return Catalog(profiles=catalog.profiles, devices={k: v for k, v in catalog.devices.items() if k in keep})

    # -- hooks used by DistrictSimulator -----------------------------------------------------------
    def wrap(self, devices: Sequence[RegisteredDevice], models: Sequence[DeviceModel],
             start_ms: int) -> list[DeviceModel | ScenarioModel]:
        by_device: dict[str, list[Effect]] = {}
        for effect in self.effects(devices):
            if effect.change is not None:
                by_device.setdefault(effect.device, []).append(effect)
        return [ScenarioModel(model, by_device[d.id], start_ms) if d.id in by_device else model
                for d, model in zip(devices, models, strict=True)]

    def stream(self, messages: Iterator[SimMessage], sim: DistrictSimulator) -> Iterator[SimMessage]:
        """Drop the silent devices' messages; add their last will and birth in time order."""
        from simulators.generate import SimMessage

        by_id = {d.id: d for d in sim.devices}
        quiet = [e for e in self.effects(sim.devices) if e.silent or e.last_will]
        status: list[SimMessage] = []
        for effect in (e for e in quiet if e.last_will):
            device = by_id[effect.device]
            topic = status_topic(device.site, device.system.value, device.id, sim.topic_prefix)
            for at_s, body in ((effect.start_s, {"state": "offline"}),
                               (effect.end_s, {"state": "online", "ts": sim.start_ms + round(effect.end_s * 1000)})):
                status.append(SimMessage(topic, encode(body), sim.start_ms + round(at_s * 1000), device.id,
                                         device.profile.type, device.system.value, 0, 0, 0, retain=True))
        status.sort(key=lambda m: m.sim_ms)
        for message in messages:
            while status and status[0].sim_ms <= message.sim_ms:
                yield status.pop(0)
            t_s = (message.sim_ms - sim.start_ms) / 1000
            if any(e.device == message.device_id and e.active(t_s) for e in quiet):
                continue
            yield message
        yield from status


class ScenarioModel:
    """A device model whose values the scenario overrides while an effect is on."""

    __slots__ = ("_effects", "_model", "_start_ms")

    def __init__(self, model: DeviceModel, effects: Sequence[Effect], start_ms: int) -> None:
        self._model, self._effects, self._start_ms = model, tuple(effects), start_ms

    def sample(self, ts_ms: int) -> Values:
        values = self._model.sample(ts_ms)
        t_s = (ts_ms - self._start_ms) / 1000
        for effect in self._effects:
            if effect.active(t_s) and effect.change is not None:
                values = effect.change(t_s - effect.start_s, values)
        return values


# --- scopes ---------------------------------------------------------------------------------------


def _compartment(name: str) -> Callable[[Catalog], set[str]]:
    return lambda catalog: {d.id for d in catalog.devices.values() if d.location.get("compartment") == name}


def _devices(*ids: str) -> Callable[[Catalog], set[str]]:
    return lambda _catalog: set(ids)


def _system(system: str) -> Callable[[Catalog], set[str]]:
    return lambda catalog: {d.id for d in catalog.devices.values() if d.system.value == system}


def silent_network_nodes(devices: Iterable[RegisteredDevice], share: float = 0.15) -> list[str]:
    """Every third energy-network node reporting each minute, until ``share`` of all network nodes."""
    network = sorted((d for d in devices if d.system.value == "network"), key=lambda d: d.id)
    fast = [d.id for d in network if d.profile.reporting_interval_s <= 60]
    wanted = math.ceil(round(share * len(network), 6))
    return fast[::3][:wanted]


def _network_silence(devices: Sequence[RegisteredDevice]) -> tuple[Effect, ...]:
    return tuple(Effect(node, ONSET_S, ONSET_S + 360, silent=True) for node in silent_network_nodes(devices))


# --- the scenarios --------------------------------------------------------------------------------

_T0 = ONSET_S


def _scenario(name: str, description: str, effects: tuple[Effect, ...] | EffectsOf,
              scope: Callable[[Catalog], set[str]], span_s: float | None = None) -> Scenario:
    if isinstance(effects, tuple):
        fixed = effects
        return Scenario(name, description, lambda _devices: fixed, scope, max(e.end_s for e in fixed))
    assert span_s is not None
    return Scenario(name, description, effects, scope, span_s)


def _build() -> dict[str, Scenario]:
    off_fan = setting(state="off", frequency=0.0, current=0.0)
    scenarios = [
        _scenario(
            "gas_leak", "methane leak in compartment c002: gas1 climbs past 10 then 20 %LEL while the fan stays "
            "off, gas2 past 10 %LEL; then the leak is stopped",
            (Effect("tun-c002-gas1", _T0, _T0 + 390, following("ch4", ramp(
                (0, 1.0), (60, 14.0), (150, 14.0), (180, 28.0), (270, 28.0), (300, 14.0), (360, 14.0), (390, 1.0)),
                decimals=1)),
             Effect("tun-c002-gas2", _T0, _T0 + 390, following("ch4", ramp(
                 (0, 1.0), (60, 12.0), (330, 12.0), (360, 1.0)), decimals=1)),
             Effect("tun-c002-fan", _T0, _T0 + 390, off_fan)),
            _compartment("c002")),
        _scenario(
            "sump_pump_failure", "compartment c004: the duty pump trips, the standby pump does not start, the "
            "sump fills to 1.5 m; then the standby pump drains it and the duty pump is reset",
            (Effect("tun-c004-sump", _T0, _T0 + 360, following(
                "level", ramp((0, 0.3), (240, 1.5)), pump1_state="fault", pump1_current=0.0,
                pump2_state="stopped", pump2_current=0.0)),
             Effect("tun-c004-sump", _T0 + 360, _T0 + 510, following(
                 "level", ramp((0, 1.5), (120, 0.3)), pump1_state="fault", pump1_current=0.0,
                 pump2_state="running", pump2_current=8.5))),
            _compartment("c004")),
        _scenario(
            "fan_failure", "compartment c003: the ventilation fan faults and stops for three minutes",
            (Effect("tun-c003-fan", _T0, _T0 + 180, setting(state="fault", frequency=0.0, current=0.0)),),
            _compartment("c003")),
        _scenario(
            "dts_hot_spot", "compartment c005: a cable hot spot heats at 9 °C/min to 84 °C, holds, cools down",
            (Effect("tun-c005-dts", _T0, _T0 + 360, following(
                "t_max", ramp((0, 30.0), (360, 84.0)), decimals=1, rise_rate=9.0, t_max_pos=87.0)),
             Effect("tun-c005-dts", _T0 + 360, _T0 + 420, setting(t_max=84.0, rise_rate=0.0, t_max_pos=87.0)),
             Effect("tun-c005-dts", _T0 + 420, _T0 + 480, following(
                 "t_max", ramp((0, 84.0), (60, 62.0)), decimals=1, rise_rate=-22.0, t_max_pos=87.0)),
             Effect("tun-c005-dts", _T0 + 480, _T0 + 570, setting(t_max=62.0, rise_rate=0.0, t_max_pos=87.0)),
             Effect("tun-c005-dts", _T0 + 570, _T0 + 630, following(
                 "t_max", ramp((0, 62.0), (60, 30.0)), decimals=1, rise_rate=-32.0, t_max_pos=87.0))),
            _compartment("c005")),
        _scenario(
            "sensor_drift", "compartment c007: the O2 cell of gas1 drifts to 19.7 %vol over 5 min (its neighbour "
            "gas2 reads normal), then is recalibrated",
            (Effect("tun-c007-gas1", _T0, _T0 + 420, _Drift("o2", 19.7, 300)),
             Effect("tun-c007-gas1", _T0 + 420, _T0 + 540, _ReturnFrom("o2", 19.7, 120))),
            _compartment("c007")),
        _scenario(
            "stuck_sensor", "compartment c006: the O2 reading of gas1 freezes for five minutes",
            (Effect("tun-c006-gas1", _T0, _T0 + 300, _Stuck("o2")),),
            _compartment("c006")),
        _scenario(
            "device_dropout", "compartment c008: gas2 drops off the network for three minutes (last will "
            "'offline'), then reconnects",
            (Effect("tun-c008-gas2", _T0, _T0 + 180, silent=True, last_will=True),),
            _compartment("c008")),
        _scenario(
            "chp_trip", "CHP engine 1 trips (fault) and stands still for two minutes, then runs again",
            (Effect("stn-chp1", _T0, _T0 + 120, setting(
                state="fault", p_el=0.0, q_heat=0.0, gas_flow=0.0, eta_el=0.0, rpm=0.0, nox=0.0,
                exhaust_temp=180.0, jacket_temp=70.0)),),
            _devices("stn-chp1", "stn-chp2")),
        _scenario(
            "heat_pump_cold_source", "heat pump 1, from minute 3: source water falls to 4.6 °C, then to 3.2 °C, "
            "then recovers in the same two steps (after the CHP trip when both run side by side)",
            (Effect("stn-hp1", _T0 + 120, _T0 + 750, _follow_source(ramp(
                (0, 9.0), (60, 4.6), (240, 4.6), (270, 3.2), (420, 3.2), (450, 4.6), (540, 4.6), (600, 9.0)))),),
            _devices("stn-hp1", "stn-hp2")),
        _scenario(
            "network_silence", "15 % of the energy-network nodes (every third node reporting each minute) go "
            "silent for six minutes, then come back",
            _network_silence,
            _system("network"), span_s=_T0 + 360),
        _scenario(
            "compartment_fire", "compartment c009: the fire detector reports fire while the fan keeps running",
            (Effect("tun-c009-fire", _T0, _T0 + 180, setting(state="fire")),
             Effect("tun-c009-fan", _T0, _T0 + 180, setting(state="on", frequency=50.0, current=14.0,
                                                          fire_interlock=False))),
            _compartment("c009")),
    ]
    return {s.name: s for s in scenarios}


class _ReturnFrom:
    """After a drift: back from ``start`` to the true value over ``over_s`` (a recalibration)."""

    def __init__(self, key: str, start: float, over_s: float) -> None:
        self.key, self.start, self.over_s = key, start, over_s

    def __call__(self, t: float, values: Values) -> Values:
        true = float(values[self.key])
        share = min(1.0, t / self.over_s)
        return {**values, self.key: round(self.start + (true - self.start) * share, 3)}


def _follow_source(curve: Callable[[float], float]) -> Change:
    def change(t: float, values: Values) -> Values:
        source_in = round(curve(t), 2)
        return {**values, "source_in": source_in, "source_out": round(max(-10.0, source_in - 3.5), 2)}
    return change


SCENARIOS: dict[str, Scenario] = _build()
