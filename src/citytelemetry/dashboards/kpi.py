"""KPI settings: conversion factors, targets and the metered quantities each KPI is built from.

Every figure has a default documented here and in ``dashboards/kpi.toml``; an operator overrides them
in that file (or another passed with ``--kpi``), never in code. The dashboards compute the KPIs by
InfluxQL from the stored readings; these settings only choose factors and which fields feed which term.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

FieldRef = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")]


class KpiError(Exception):
    """The KPI settings file is unreadable or invalid; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Factors(_Section):
    """Conversion factors. Tags as in /work/shared/domain.md: [std] standard, [src] source, [est] estimate."""

    electricity_kgce_per_kwh: float = Field(default=0.1229, gt=0)  # [std] GB/T 2589-2008, calorific basis
    baseline_electricity_kgce_per_kwh: float = Field(default=0.30, gt=0)  # [est] primary equivalent (coal power)
    gas_kgce_per_m3: float = Field(default=1.2143, gt=0)  # [std] GB/T 2589-2008
    heat_tce_per_gj: float = Field(default=0.0341, gt=0)  # [std] GB/T 2589-2008
    gas_lhv_mj_per_m3: float = Field(default=35.9, gt=0)  # [est] natural gas lower heating value
    gas_co2_kg_per_m3: float = Field(default=2.1, gt=0)  # [calc] IPCC default, 2.0-2.2
    grid_co2_kg_per_kwh: float = Field(default=0.5703, ge=0)  # [src] national grid factor, published yearly
    coal_co2_kg_per_kgce: float = Field(default=2.66, gt=0)  # [est] baseline coal
    baseline_boiler_efficiency: float = Field(default=0.80, gt=0, le=1)  # [est] separate heat production
    baseline_chiller_cop: float = Field(default=4.0, gt=0)  # [est] separate cooling production

    @property
    def heat_kgce_per_kwh(self) -> float:
        """1 kWh = 0.0036 GJ; tce -> kgce x 1000."""
        return 3.6 * self.heat_tce_per_gj

    @property
    def gas_lhv_kwh_per_m3(self) -> float:
        return self.gas_lhv_mj_per_m3 / 3.6


class Links(_Section):
    """Where the pipeline serves its alert pages and runbooks (its ``alerts.public_url``)."""

    pipeline_url: str = Field(default="http://127.0.0.1:9108", pattern=r"^https?://[^/\s]+(/\S*)?$")


class Targets(_Section):
    """Published eco-park targets, in percent: the reference lines and stat thresholds."""

    coverage_pct: float = 90.0
    clean_energy_pct: float = 80.6
    renewable_share_pct: float = 15.0
    energy_saving_pct: float = 50.7
    carbon_reduction_pct: float = 64.6


class Sources(_Section):
    """Which ``device_type.field`` (power in kW, gas in Nm³/h) feeds each term of the KPIs."""

    gas: tuple[FieldRef, ...] = ("chp_engine.gas_flow", "gas_boiler.gas_flow")
    chp_gas: tuple[FieldRef, ...] = ("chp_engine.gas_flow",)
    chp_electricity: tuple[FieldRef, ...] = ("chp_engine.p_el",)
    chp_heat: tuple[FieldRef, ...] = ("chp_engine.q_heat",)
    # Empty: chp_engine.q_heat is all recovered heat (jacket water and exhaust), including the exhaust heat
    # that drives the absorption chillers; adding their cooling counted it twice (109 % on the simulated plant).
    absorption_cooling: tuple[FieldRef, ...] = ()
    renewable_electricity: tuple[FieldRef, ...] = ("pv_inverter.p_ac", "wind_turbine.power")
    heat_pump_heat: tuple[FieldRef, ...] = ("heat_pump.q_heat",)
    heat_pump_electricity: tuple[FieldRef, ...] = ("heat_pump.p_el",)
    chiller_electricity: tuple[FieldRef, ...] = ("electric_chiller.p_el",)
    heat_output: tuple[FieldRef, ...] = ("chp_engine.q_heat", "gas_boiler.q_heat", "heat_pump.q_heat")
    cooling_output: tuple[FieldRef, ...] = ("absorption_chiller.q_cool", "electric_chiller.q_cool")
    district_electricity: tuple[FieldRef, ...] = ("feeder_10kv.active_power",)


class Coverage(_Section):
    """Monitoring coverage: a device counts as monitored with a reading within N reporting intervals."""

    system: str = "network"
    freshness_intervals: float = Field(default=3.0, gt=0)
    min_window_s: float = Field(default=300.0, ge=0)  # allows for ingest delay and clock offsets


class KpiSettings(_Section):
    factors: Factors = Factors()
    targets: Targets = Targets()
    sources: Sources = Sources()
    coverage: Coverage = Coverage()
    links: Links = Links()


def load_kpi_settings(path: Path | None) -> KpiSettings:
    """Read ``path`` (TOML); ``None`` gives the documented defaults."""
    if path is None:
        return KpiSettings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise KpiError(f"{path}: cannot read: {exc}") from None
    try:
        return KpiSettings.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise KpiError(f"{path}: invalid KPI settings:\n" + "\n".join(lines)) from None
