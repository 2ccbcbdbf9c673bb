"""Configuration of in-stream alerting (the ``[alerts]`` section)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    rules_dir: Path = Path("alert_rules")
    state_file: Path = Path(".run/alert-state.json")
    evaluation_interval_s: float = Field(default=5.0, gt=0, le=300)  # time-based rules: staleness, coverage
    resend_interval_s: float = Field(default=60.0, gt=0)  # firing alerts are sent again this often
    request_timeout_s: float = Field(default=5.0, gt=0, le=120)  # each POST to Alertmanager
    max_queued: int = Field(default=100_000, ge=100)  # alert events waiting while Alertmanager is unreachable
    state_save_interval_s: float = Field(default=10.0, gt=0)  # state file written this often when changed
    generator_url: str = "http://127.0.0.1:9108/alerts"  # generatorURL of every alert
    runbook_base_url: str = "docs/runbooks.md"  # runbook annotation: <base>#<anchor>
