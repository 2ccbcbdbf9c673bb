"""InfluxQL text for the panels: identifiers quoted, Grafana macros left for Grafana to fill in.

Macros used: ``$timeFilter``, ``$__interval``, ``$__range_s`` and the template variables
``$site``, ``$device_type``, ``$device`` and the dashboard's location variable (``$compartment``,
``$unit``, ``$node``), always in ``"tag" =~ /^$var$/`` form so multi-value and All selections work.

Rollups (docs/storage.md): ``tiered(measurement, aggregate)`` reads ``"$rp"./^T(_agg)?$/``, where the
hidden variable ``$rp`` (``TIER_VARIABLE``) is the retention policy for the dashboard's time range: the raw
one (which holds ``T``) for short ranges, a rollup tier (which holds ``T_agg``) for long ones. The same
text then reads ``max`` of the raw values or of the window maxima, ``last`` of the last values, and so on.
"""

# ruff: noqa: S608 - InfluxQL, not SQL: identifiers come from the profile schema ([a-z0-9_]) and are quoted

from __future__ import annotations

from collections.abc import Iterable, Sequence


def ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def var_match(tag: str, variable: str | None = None) -> str:
    return f"{ident(tag)} =~ /^${variable or tag}$/"


RP = "rp"
TIER_VARIABLE = ('SELECT "rp" FROM "ct_meta"."ct_storage_tiers" WHERE $__to - $__from > "min_range_ms" '
                 'AND $__to - $__from <= "max_range_ms"')


def tiered(measurement: str, aggregate: str) -> str:
    """The raw measurement or its ``aggregate`` rollup, whichever the range's retention policy holds."""
    return f'"${RP}"./^{measurement}(_{aggregate})?$/'


def where(*clauses: str) -> str:
    return " AND ".join(("$timeFilter", *clauses))


def measurements_regex(names: Iterable[str]) -> str:
    return "/^(" + "|".join(sorted(names)) + ")$/"


def aggregate_band(measurement: str, field: str, filters: Sequence[str]) -> list[str]:
    """Worst high, mean and worst low across the selected devices per interval: three statements, as a
    rollup keeps each aggregate in its own measurement."""
    return [f"SELECT {name}({ident(field)}) AS {ident(name)} FROM {tiered(measurement, name)} "
            f"WHERE {where(*filters)} GROUP BY time($__interval) fill(none)" for name in ("max", "mean", "min")]


def last_by(measurement: str, field: str, filters: Sequence[str], tag: str) -> str:
    return (f"SELECT last({ident(field)}) AS {ident(field)} FROM {tiered(measurement, 'last')} WHERE {where(*filters)} "
            f"GROUP BY time($__interval), {ident(tag)} fill(none)")


def max_by(measurement: str, field: str, filters: Sequence[str], tag: str) -> str:
    return extreme_by("max", measurement, field, filters, tag)


def extreme_by(selector: str, measurement: str, field: str, filters: Sequence[str], tag: str) -> str:
    """``min`` or ``max`` per interval and tag value: the worst reading in each heatmap cell (from the raw
    measurement or its ``min``/``max`` rollup, as the range's retention policy holds them)."""
    return (f"SELECT {selector}({ident(field)}) AS {ident(field)} FROM {tiered(measurement, selector)} "
            f"WHERE {where(*filters)} "
            f"GROUP BY time($__interval), {ident(tag)} fill(none)")


def counter_rate(measurement: str, field: str, filters: Sequence[str], per: str = "1h") -> str:
    """Sum over devices of each cumulative register's increase per ``per`` (kWh/h = kW, GJ/h, m³/h)."""
    inner = (f'SELECT non_negative_derivative(max({ident(field)}), {per}) AS "rate" FROM {tiered(measurement, "max")} '
             f'WHERE {where(*filters)} GROUP BY time($__interval), "device" fill(none)')
    return (f'SELECT sum("rate") AS {ident(field)} FROM ({inner}) WHERE $timeFilter '
            "GROUP BY time($__interval) fill(none)")


def summed_mean(measurement: str, field: str, filters: Sequence[str], coefficient: float = 1.0,
                *, over_time: bool = True) -> str:
    """Per device mean, summed over devices (total power), times ``coefficient``."""
    by_time = "time($__interval), " if over_time else ""
    # Over a rollup: the mean of the window means (equal to the raw mean where windows hold equal counts).
    inner = (f'SELECT mean({ident(field)}) AS "v" FROM {tiered(measurement, "mean")} WHERE {where(*filters)} '
             f'GROUP BY {by_time}"device" fill(none)')
    scale = "" if coefficient == 1.0 else f" * {coefficient!r}"
    outer_group = " GROUP BY time($__interval) fill(none)" if over_time else ""
    return f'SELECT sum("v"){scale} AS "value" FROM ({inner}) WHERE $timeFilter{outer_group}'


def reporting_share(measurement: str, window_s: int, registered_total: int, filters: Sequence[str]) -> str:
    """Devices of one type with a reading in the last ``window_s`` seconds, as a share of ``registered_total``."""
    inner = (f'SELECT last("seq") AS "seq" FROM {ident(measurement)} WHERE time > now() - {window_s}s'
             + "".join(f" AND {c}" for c in filters) + ' GROUP BY "device"')
    return f'SELECT count("seq") / {registered_total} AS "share" FROM ({inner})'


def offline_share(measurement: str, window_s: int, registered_total: int, filters: Sequence[str]) -> str:
    """Minus the share of devices of one type whose latest status in the last ``window_s`` is "offline"
    (a last will): their last readings are still in the window, but they are not reporting any more."""
    inner = (f'SELECT last("state") AS "state" FROM "ct_device_status" WHERE time > now() - {window_s}s '
             f'AND "device_type" = {string(measurement)}' + "".join(f" AND {c}" for c in filters)
             + ' GROUP BY "device"')
    return f"SELECT -1 * count(\"state\") / {registered_total} AS \"share\" FROM ({inner}) WHERE \"state\" = 'offline'"


def reporting_share_over_time(measurement: str, bucket_s: int, registered_total: int,
                              filters: Sequence[str]) -> str:
    inner = (f'SELECT last("seq") AS "seq" FROM {ident(measurement)} WHERE {where(*filters)} '
             f'GROUP BY time({bucket_s}s), "device" fill(none)')
    return (f'SELECT count("seq") / {registered_total} AS "share" FROM ({inner}) WHERE $timeFilter '
            f"GROUP BY time({bucket_s}s) fill(none)")


def completeness(measurement: str, devices: int, interval_s: float, filters: Sequence[str]) -> str:
    """Readings received / readings expected from ``devices`` devices over the selected range."""
    return (f'SELECT count("seq") / ({devices} * $__range_s / {interval_s!r}) AS "completeness" '
            f"FROM {ident(measurement)} WHERE {where(*filters)}")


def completeness_by_device(measurement: str, interval_s: float, filters: Sequence[str]) -> str:
    return (f'SELECT count("seq") / ($__range_s / {interval_s!r}) AS "completeness" FROM {ident(measurement)} '
            f'WHERE {where(*filters)} GROUP BY "device"')
