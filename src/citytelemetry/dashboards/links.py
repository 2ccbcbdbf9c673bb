"""Links from the dashboards to where an operator acts: every device type's panels link to its runbook
and to the alert pages, and each row of "Firing alerts" to that alert's page (``alerts/page.py``),
all served by the pipeline at ``links.pipeline_url`` (its ``alerts.public_url``). The alert pages link
back to the dashboards when ``alerts.dashboards_url`` is set.
"""

from __future__ import annotations

from typing import Any

from citytelemetry.profiles import Catalog

FIRING_TABLE = "Firing alerts"


def _panel_links(type_name: str, base: str) -> list[dict[str, Any]]:
    return [{"title": f"runbook: {type_name}", "url": f"{base}/docs/runbooks.md#{type_name}", "targetBlank": True},
            {"title": "alert pages (firing, recently resolved)", "url": f"{base}/alerts", "targetBlank": True}]


def add_links(dashboard: dict[str, Any], catalog: Catalog, pipeline_url: str) -> None:
    base = pipeline_url.rstrip("/")
    types = sorted(catalog.profiles, key=len, reverse=True)  # longest first: heat_pump before heat
    row_owner: str | None = None  # a device type's row: its panels follow until the next row
    for panel in dashboard.get("panels", []):
        title = str(panel.get("title", ""))
        owner = next((t for t in types if title.startswith(f"{t}:")), None)
        if panel.get("type") == "row":
            row_owner = owner
            continue
        if title == FIRING_TABLE:
            defaults = panel.setdefault("fieldConfig", {}).setdefault("defaults", {})
            defaults["links"] = [{"title": "alert page: rule, recent values, runbook", "targetBlank": True,
                                  "url": f"{base}/alerts/${{__data.fields.alertname}}/${{__data.fields.fingerprint}}"}]
        elif owner or row_owner:
            panel["links"] = _panel_links(owner or row_owner or "", base)
