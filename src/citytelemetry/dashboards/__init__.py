"""Grafana dashboards generated from the device profiles, the inventory and the KPI settings.

``build_dashboards`` gives the JSON models; ``citytelemetry dashboards build`` writes them with the
provisioning files; ``citytelemetry dashboards preview`` renders their queries to PNG.
"""

from citytelemetry.dashboards.build import build_dashboards, rendered_files, write_files
from citytelemetry.dashboards.kpi import KpiError, KpiSettings, load_kpi_settings

__all__ = ["KpiError", "KpiSettings", "build_dashboards", "load_kpi_settings", "rendered_files", "write_files"]
