"""The KPIs of /work/shared/domain.md as ratios of metered terms (station + district boundary).

Every term is one device-type field averaged per device over the time range and summed over devices
(an average power in kW, or a gas flow in Nm³/h), times a coefficient. Because every term is a rate
over the same range, a ratio of summed rates equals the ratio of the energies in that range.
InfluxQL 1.x cannot do arithmetic across measurements, so each term is its own query and the panel
adds, divides and complements the terms with Grafana transformations (see ``transforms.py``).
"""

# ruff: noqa: RUF001 - multiplication and minus signs are meant: panel text for operators

from __future__ import annotations

from dataclasses import dataclass

from citytelemetry.dashboards.kpi import KpiSettings, Sources
from citytelemetry.profiles import Catalog


class KpiSourceError(Exception):
    """A KPI source names a device type or field that the profiles do not define."""


@dataclass(frozen=True, slots=True)
class Term:
    measurement: str
    field: str
    coefficient: float
    label: str  # what the term stands for, in the description


@dataclass(frozen=True, slots=True)
class Ratio:
    key: str
    title: str
    numerator: tuple[Term, ...]
    denominator: tuple[Term, ...]
    complement: bool  # value = 1 - numerator / denominator
    target_pct: float | None
    basis: str  # the formula and factors, shown in the panel description


def _terms(refs: tuple[str, ...], coefficient: float, label: str) -> tuple[Term, ...]:
    out = []
    for ref in refs:
        measurement, field = ref.split(".", 1)
        out.append(Term(measurement, field, coefficient, label))
    return tuple(out)


def check_sources(sources: Sources, catalog: Catalog) -> None:
    problems = []
    for role, refs in sources.model_dump().items():
        for ref in refs:
            measurement, field = ref.split(".", 1)
            profile = catalog.profiles.get(measurement)
            if profile is None or field not in profile.measurements:
                problems.append(f"sources.{role}: '{ref}' is not a field of the device profiles")
    if problems:
        raise KpiSourceError("; ".join(problems))


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def kpi_ratios(settings: KpiSettings, catalog: Catalog) -> list[Ratio]:
    check_sources(settings.sources, catalog)
    s, f, t = settings.sources, settings.factors, settings.targets
    fe, feb, fh, fg = (f.electricity_kgce_per_kwh, f.baseline_electricity_kgce_per_kwh, f.heat_kgce_per_kwh,
                       f.gas_kgce_per_m3)
    gas = _terms(s.gas, fg, "natural gas")
    renewable = (_terms(s.renewable_electricity, fe, "PV and wind electricity")
                 + _terms(s.heat_pump_heat, fh, "heat-pump heat")
                 + _terms(s.heat_pump_electricity, -fh, "minus heat-pump electricity (ambient heat)"))

    def grid_import(factor: float) -> tuple[Term, ...]:
        """Electricity balance: district demand + station consumers - own generation."""
        return (_terms(s.district_electricity, factor, "district electricity demand")
                + _terms(s.heat_pump_electricity, factor, "heat-pump electricity")
                + _terms(s.chiller_electricity, factor, "electric-chiller electricity")
                + _terms(s.chp_electricity, -factor, "minus CHP generation")
                + _terms(s.renewable_electricity, -factor, "minus PV and wind generation"))

    total = gas + renewable + grid_import(fe)
    baseline = (_terms(s.district_electricity, feb, "district electricity, separate production")
                + _terms(s.heat_output, fh / f.baseline_boiler_efficiency, "heat from a coal boiler")
                + _terms(s.cooling_output, feb / f.baseline_chiller_cop, "cooling from electric chillers"))
    actual = gas + grid_import(feb)
    co2_actual = _terms(s.gas, f.gas_co2_kg_per_m3, "CO2 of gas") + tuple(
        Term(x.measurement, x.field, x.coefficient / feb * f.grid_co2_kg_per_kwh, "CO2 of grid import")
        for x in grid_import(feb))
    co2_baseline = tuple(Term(x.measurement, x.field, x.coefficient * f.coal_co2_kg_per_kgce, x.label + " (CO2)")
                         for x in baseline)
    lhv = f.gas_lhv_kwh_per_m3
    factors = (f"electricity {_fmt(fe)} kgce/kWh (calorific), {_fmt(feb)} kgce/kWh in the baseline (primary); "
               f"gas {_fmt(fg)} kgce/m³; heat {_fmt(f.heat_tce_per_gj)} tce/GJ")
    return [
        Ratio("renewable_share", "Renewable share", renewable, total, complement=False,
              target_pct=t.renewable_share_pct,
              basis="renewable / total energy; renewable = (PV + wind) × electricity factor + heat-pump ambient "
                    "heat (Q_hp − W_hp) × heat factor; total = gas + renewable + grid import (district demand + "
                    f"station consumers − own generation), all in kgce. Factors: {factors}."),
        Ratio("clean_energy", "Clean-energy utilisation", gas + renewable, total, complement=False,
              target_pct=t.clean_energy_pct,
              basis=f"(gas + renewable) / total energy, in kgce, same boundary as the renewable share. {factors}."),
        Ratio("energy_saving", "Comprehensive energy saving", actual, baseline, complement=True,
              target_pct=t.energy_saving_pct,
              basis="1 − actual / baseline; actual = gas + grid import (primary factor); baseline = separate "
                    f"production of the same electricity (primary factor), heat (coal boiler, efficiency "
                    f"{_fmt(f.baseline_boiler_efficiency)}) and cooling (electric chillers, COP "
                    f"{_fmt(f.baseline_chiller_cop)}). {factors}."),
        Ratio("carbon_reduction", "Carbon reduction", co2_actual, co2_baseline, complement=True,
              target_pct=t.carbon_reduction_pct,
              basis=f"1 − CO2 actual / CO2 baseline; gas {_fmt(f.gas_co2_kg_per_m3)} kg/m³, grid "
                    f"{_fmt(f.grid_co2_kg_per_kwh)} kg/kWh, coal baseline {_fmt(f.coal_co2_kg_per_kgce)} kg/kgce "
                    "on the energy-saving baseline."),
        Ratio("cchp_efficiency", "CCHP total efficiency",
              _terms(s.chp_electricity, 1.0, "CHP electricity") + _terms(s.chp_heat, 1.0, "CHP recovered heat")
              + _terms(s.absorption_cooling, 1.0, "absorption cooling"),
              _terms(s.chp_gas, lhv, "CHP gas × LHV"), complement=False, target_pct=None,
              basis=f"(W_el + Q_heat + Q_cool) / (V_gas × LHV) (EPA method), powers in kW, LHV "
                    f"{_fmt(f.gas_lhv_mj_per_m3)} MJ/m³ = {_fmt(lhv)} kWh/m³. Q_heat is the engines' recovered heat "
                    "(jacket water and exhaust). Q_cool (sources.absorption_cooling) is left out by default: the "
                    "exhaust heat that drives the absorption chillers is already in Q_heat, and adding their "
                    "cooling counts it twice (the value then exceeds 100 %). Add it only where Q_heat is metered "
                    "after the chillers' heat take-off."),
    ]
