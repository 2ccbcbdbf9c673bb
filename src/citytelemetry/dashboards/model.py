"""Assemble a dashboard (variables, alert annotations, panels) and finalise it as Grafana JSON.

The output follows Grafana's current dashboard model (``schemaVersion`` 39, data sources referenced
by ``{"type", "uid"}``, field config instead of per-panel legacy options) and is deterministic: a
stable uid, sequential panel ids, keys sorted when written.
"""

# ruff: noqa: S608 - InfluxQL, not SQL: identifiers come from the profile schema ([a-z0-9_]) and are quoted

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafanalib import core
from grafanalib._gen import DashboardEncoder

from citytelemetry.dashboards.influxql import RP, TIER_VARIABLE, ident, string
from citytelemetry.dashboards.panels import DATASOURCE

SCHEMA_VERSION = 39
ALL = "$__all"
ALL_VALUE = ".*"  # the regex Grafana puts in for "All": cheaper than listing every device
_LEGACY_PANEL_KEYS = frozenset({
    "span", "height", "minSpan", "error", "cacheTimeout", "columns", "fontSize", "mappings", "color",
    "cards", "dataFormat", "heatmap", "hideZeroBuckets", "highlightCards", "legend", "reverseYBuckets",
    "tooltip", "xAxis", "xBucketNumber", "xBucketSize", "yAxis", "yBucketBound", "yBucketNumber", "yBucketSize",
    "thresholds", "repeatDirection", "maxPerRow", "repeat", "hideTimeOverride",
})
_DASHBOARD_DROP = frozenset({"rows", "sharedCrosshair", "hideControls", "style", "gnetId", "__inputs"})


@dataclass(frozen=True, slots=True)
class Variable:
    """A query variable: multi-value with All (``.*``), values from ``SHOW TAG VALUES``."""

    name: str
    label: str
    query: str


def tag_values(key: str, measurements: str | None = None, *conditions: str) -> str:
    source = f" FROM {measurements}" if measurements else ""
    clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SHOW TAG VALUES{source} WITH KEY = {ident(key)}{clause}"


def _template(variable: Variable) -> Any:
    return core.Template(name=variable.name, label=variable.label, query=variable.query, dataSource=DATASOURCE,
                         includeAll=True, multi=True, allValue=ALL_VALUE, default=ALL, refresh=1, sort=1)


def alert_annotations(system: str | None) -> list[dict[str, Any]]:
    """Alert notifications written by the alerting stage to ``ct_alerts``, as annotations."""
    scope = f' AND "system" = {string(system)}' if system else ""
    out = []
    for state, color in (("firing", "red"), ("resolved", "green")):
        query = ('SELECT "summary", "value", "threshold", "alertname", "severity", "device" FROM "ct_alerts" '
                 f'WHERE $timeFilter AND "state" = {string(state)} AND "site" =~ /^$site$/{scope}')
        out.append({"datasource": DATASOURCE, "enable": True, "hide": False, "iconColor": color,
                    "name": f"Alerts {state}", "query": query, "textColumn": "summary",
                    "tagsColumn": "alertname,severity,device", "titleColumn": "alertname"})
    return out


@dataclass(frozen=True, slots=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    tags: Sequence[str]
    variables: Sequence[Variable]
    panels: Sequence[Any]
    system: str | None = None  # scopes the alert annotations
    time_from: str = "now-6h"


def _clean_panel(panel: dict[str, Any]) -> dict[str, Any]:
    if panel["type"] == "row":
        return {k: panel[k] for k in ("collapsed", "gridPos", "id", "panels", "title", "type")}
    out = {k: v for k, v in panel.items() if v is not None and k not in _LEGACY_PANEL_KEYS}
    out.get("options", {}).pop("fieldOptions", None)
    out["targets"] = [{k: v for k, v in t.items() if k != "measurement"} for t in out.get("targets", [])]
    if not out.get("links"):
        out.pop("links", None)
    return out


def _current_all(template: dict[str, Any]) -> dict[str, Any]:
    template["current"] = {"selected": True, "text": ["All"], "value": [ALL]}
    for key in ("tags", "useTags", "tagsQuery", "tagValuesQuery", "auto", "auto_min", "auto_count"):
        template.pop(key, None)
    template["definition"] = template["query"]
    return template


def tier_template() -> dict[str, Any]:
    """The hidden ``$rp``: the retention policy for the time range, re-read on every range change."""
    return {"name": RP, "label": "Storage tier", "type": "query", "datasource": DATASOURCE, "query": TIER_VARIABLE,
            "definition": TIER_VARIABLE, "refresh": 2, "hide": 2, "includeAll": False, "multi": False,
            "current": {}, "options": [], "sort": 0}


def finalize(spec: DashboardSpec) -> dict[str, Any]:
    dashboard = core.Dashboard(
        title=spec.title, uid=spec.uid, description=spec.description, tags=sorted(spec.tags),
        panels=list(spec.panels), schemaVersion=SCHEMA_VERSION, graphTooltip=1, refresh="30s",
        templating=core.Templating(list=[_template(v) for v in spec.variables]),
        annotations=core.Annotations(list=alert_annotations(spec.system)),
        time=core.Time(spec.time_from, "now"), timezone="browser", editable=True,
    )
    data: dict[str, Any] = json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder))
    for key in _DASHBOARD_DROP:
        data.pop(key, None)
    data["panels"] = [_clean_panel(p) for p in data["panels"]]
    data["templating"]["list"] = [_current_all(t) for t in data["templating"]["list"]]
    if re.search(rf"\${RP}\b", json.dumps(data["panels"])):
        data["templating"]["list"].append(tier_template())
    return data


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
