"""Configuration of in-stream alerting (the ``[alerts]`` section)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    rules_dir: Path = Path("alert_rules")
    state_file: Path = Path(".run/alert-state.json")
    evaluation_interval_s: float = Field(default=5.0, gt=0, le=300)
    resend_interval_s: float = Field(default=60.0, gt=0)
