"""In-stream alert rules generated from the device profiles and ``alert_rules/``, delivered through Alertmanager.

    evaluator = build_evaluator(settings, catalog, emit)   # rules compiled, state restored; no network I/O
    build_pipeline(settings, catalog, evaluator_factory=lambda emit: build_evaluator(settings, catalog, emit))

Layout: ``rulefiles`` (schema of alert_rules/), ``compile`` (profiles + files -> rule callables),
``rules`` (the callables), ``lifecycle`` (pending -> firing -> resolved), ``clock`` (event time),
``delivery`` (Alertmanager API v2 queue), ``history`` (ct_alerts points), ``state`` (restart-safe state),
``evaluator`` (the AlertEvaluator tying them together); its settings are ``config.AlertSettings``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citytelemetry.alerts.clock import WallClock
    from citytelemetry.config import Settings
    from citytelemetry.contracts import AlertEvaluator, EmitLines
    from citytelemetry.profiles import Catalog

__all__ = ["build_evaluator"]


def build_evaluator(settings: Settings, catalog: Catalog, emit: EmitLines, *,
                    clock: WallClock = time.time) -> AlertEvaluator:
    """The evaluator for ``run.build_pipeline(evaluator_factory=...)``; raises
    ``citytelemetry.alerts.rulefiles.AlertRuleError`` when a rule file is invalid."""
    from citytelemetry.alerts.evaluator import AlertEngine

    return AlertEngine(settings, catalog, emit, clock=clock)
