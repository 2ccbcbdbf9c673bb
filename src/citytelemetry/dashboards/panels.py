"""Panel constructors on grafanalib (0.7) with the field config of current Grafana (10/11).

grafanalib still writes some Grafana 6 keys; ``model.finalize`` removes them. Every panel and target
points at the provisioned InfluxDB data source by uid (``DATASOURCE``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafanalib import core
from grafanalib.influxdb import InfluxDBTarget

DATASOURCE_UID = "citytelemetry-influxdb"
DATASOURCE: dict[str, str] = {"type": "influxdb", "uid": DATASOURCE_UID}


@dataclass(frozen=True, slots=True)
class Query:
    """One panel target: InfluxQL text, legend alias and result format (``time_series`` or ``table``)."""

    text: str
    alias: str = ""
    table: bool = False


def targets(queries: Sequence[Query]) -> list[Any]:
    return [InfluxDBTarget(query=q.text, alias=q.alias, refId=chr(ord("A") + i) if i < 26 else f"Q{i}",
                           datasource=DATASOURCE, format="table" if q.table else "time_series")
            for i, q in enumerate(queries)]


def timeseries(title: str, description: str, queries: Sequence[Query], *, unit: str = "none",
               thresholds: list[dict[str, Any]] | None = None, stacked: bool = False, bars: bool = False,
               percent_max: bool = False) -> Any:
    extra: dict[str, Any] = {}
    if percent_max:
        extra = {"fieldConfig": {"defaults": {"min": 0, "max": 1}}}
    return core.TimeSeries(
        title=title, description=description, dataSource=DATASOURCE, targets=targets(queries), unit=unit,
        thresholds=thresholds or [{"color": "green", "value": None}],
        thresholdsStyleMode="line+area" if thresholds and len(thresholds) > 1 else "off",
        stacking={"mode": "normal", "group": "A"} if stacked else {"mode": "none", "group": "A"},
        drawStyle="bars" if bars else "line", fillOpacity=60 if (stacked or bars) else 0,
        legendDisplayMode="list", tooltipMode="multi", spanNulls=True, showPoints="never",
        maxDataPoints=500, extraJson=extra or None,
    )


def stat(title: str, description: str, queries: Sequence[Query], *, unit: str = "none",
         thresholds: list[dict[str, Any]] | None = None, transformations: list[dict[str, Any]] | None = None,
         calc: str = "lastNotNull", decimals: int | None = None) -> Any:
    return core.Stat(
        title=title, description=description, dataSource=DATASOURCE, targets=targets(queries), format=unit,
        thresholds=thresholds or [{"color": "green", "value": None}], reduceCalc=calc, graphMode="none",
        colorMode="background", decimals=decimals, transformations=transformations or [], noValue="no data",
        color={"mode": "thresholds"},
    )


def bargauge(title: str, description: str, queries: Sequence[Query], *, unit: str = "percentunit",
             thresholds: list[dict[str, Any]] | None = None, minimum: float = 0, maximum: float | None = 1) -> Any:
    extra = {
        "fieldConfig": {"defaults": {"unit": unit, "min": minimum, "max": maximum, "color": {"mode": "thresholds"}},
                        "overrides": []},
        "options": {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    }
    return core.BarGauge(title=title, description=description, dataSource=DATASOURCE, targets=targets(queries),
                         thresholds=thresholds or [{"color": "green", "value": None}], extraJson=extra)


def state_timeline(title: str, description: str, queries: Sequence[Query], mappings: list[dict[str, Any]]) -> Any:
    return core.StateTimeline(title=title, description=description, dataSource=DATASOURCE,
                              targets=targets(queries), mappings=mappings, colorMode="fixed",
                              showValue="never", rowHeight=0.9, maxDataPoints=500,
                              extraJson={"fieldConfig": {"defaults": {"color": {"mode": "thresholds"}}}})


def table(title: str, description: str, queries: Sequence[Query], *,
          transformations: list[dict[str, Any]] | None = None, mappings: list[dict[str, Any]] | None = None,
          unit: str = "", sort_by: str | None = None, descending: bool = False) -> Any:
    sort = [core.TableSortByField(displayName=sort_by, desc=descending)] if sort_by else []
    extra = {"fieldConfig": {"defaults": {"mappings": mappings or []}}}
    return core.Table(title=title, description=description, dataSource=DATASOURCE, targets=targets(queries),
                      transformations=transformations or [], unit=unit, sortBy=sort, filterable=True,
                      extraJson=extra)


def heatmap(title: str, description: str, queries: Sequence[Query], *, unit: str) -> Any:
    """Rows = the series of the query (one per compartment), columns = time, colour = value."""
    options = {
        "calculate": False, "cellGap": 1, "rowsFrame": {"layout": "auto"},
        "color": {"mode": "scheme", "scheme": "Turbo", "steps": 64, "exponent": 0.5, "fill": "dark-orange",
                  "reverse": False},
        "yAxis": {"axisPlacement": "left", "reverse": True},
        "cellValues": {"unit": unit}, "legend": {"show": True}, "tooltip": {"mode": "single", "yHistogram": False},
        "filterValues": {"le": 1e-9}, "showValue": "never", "exemplars": {"color": "rgba(255,0,255,0.7)"},
    }
    return core.Heatmap(title=title, description=description, dataSource=DATASOURCE, targets=targets(queries),
                        dataFormat="tsbuckets", maxDataPoints=200,
                        extraJson={"options": options, "fieldConfig": {"defaults": {"unit": unit}}})


def text(title: str, content: str) -> Any:
    return core.Text(title=title, content=content, mode="markdown")


def row(title: str) -> Any:
    return core.RowPanel(title=title)
