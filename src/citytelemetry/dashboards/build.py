"""Build every dashboard from the profiles, the inventory and the KPI settings; write JSON and provisioning.

Layout of the build directory::

    <out>/dashboards/<uid>.json                               one file per dashboard, keys sorted
    <out>/provisioning/dashboards/citytelemetry.yaml          the dashboard provider
    <out>/provisioning/datasources/citytelemetry.yaml         the data source for the configured InfluxDB
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from citytelemetry.config import InfluxSettings
from citytelemetry.dashboards import network, overview, pipeline_health, station, tunnel
from citytelemetry.dashboards.kpi import KpiSettings
from citytelemetry.dashboards.links import add_links
from citytelemetry.dashboards.model import DashboardSpec, dump, finalize
from citytelemetry.dashboards.provisioning import datasource_for, provider_yaml
from citytelemetry.profiles import Catalog

Builder = Callable[[Catalog, KpiSettings], DashboardSpec]
BUILDERS: tuple[Builder, ...] = (overview.build, tunnel.build, station.build, network.build, pipeline_health.build)


def build_dashboards(catalog: Catalog, settings: KpiSettings) -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON model, in a fixed order."""
    out: dict[str, dict[str, Any]] = {}
    for builder in BUILDERS:
        data = finalize(builder(catalog, settings))
        add_links(data, catalog, settings.links.pipeline_url)
        out[data["uid"]] = data
    return out


def rendered_files(catalog: Catalog, settings: KpiSettings, influx: InfluxSettings) -> dict[str, str]:
    """Relative path -> file content of everything ``build`` writes."""
    files = {f"dashboards/{uid}.json": dump(data) for uid, data in build_dashboards(catalog, settings).items()}
    files["provisioning/dashboards/citytelemetry.yaml"] = provider_yaml()
    files["provisioning/datasources/citytelemetry.yaml"] = datasource_for(influx)
    return files


def write_files(files: dict[str, str], out: Path) -> list[Path]:
    written = []
    for relative, content in sorted(files.items()):
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written
