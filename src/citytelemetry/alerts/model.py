"""What every rule shares: its static description (``RuleInfo``), what it watches (``Subject``) and the
alert instances it raises (``Alert``), with their lifecycle states."""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Labels = tuple[tuple[str, str], ...]
RECENT = 30  # values an open alert remembers, for its page (alerts/page.py)


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    PENDING = "pending"  # condition true, waiting out the rule's ``for`` duration: nobody is told yet
    FIRING = "firing"  # sent to Alertmanager and written to ct_alerts
    RESOLVED = "resolved"  # condition cleared (past the clear level): resolution sent, then forgotten


@dataclass(slots=True, frozen=True)
class RuleInfo:
    """The static part of a rule: what any alert it raises looks like.

    ``summary`` is a ``str.format`` template over ``subject``, ``value``, ``unit``, ``threshold``,
    ``clear`` and ``detail``; ``resolved`` the same for a resolution (it says what the value is now, not
    the firing condition); ``key`` is unique among the rules of one evaluator (alertname + severity).
    """

    name: str
    severity: Severity
    for_ms: int
    summary: str
    source: str
    runbook: str
    kind: str
    scope: str  # what it watches, for `citytelemetry alerts list`
    condition: str  # the condition in words, for `citytelemetry alerts list`
    unit: str = ""
    resolved: str = ""  # template of the resolution's summary; empty: "resolved: " + the firing one
    clear: float | None = None  # where the condition clears, when it is one level
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.name}/{self.severity.value}")


@dataclass(slots=True, frozen=True)
class Subject:
    """What an alert is about: one device, one compartment or unit, or one site; labels from the inventory."""

    key: str
    labels: Labels  # site, system, device?, location keys
    device_type: str = ""
    name: str = ""  # for people: the device id, "cabin power compartment c002", "hunnan network"

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.key)

    def label(self, name: str) -> str:
        for key, value in self.labels:
            if key == name:
                return value
        return ""


def fingerprint(labels: Labels) -> str:
    """Stable across restarts and processes: SHA-256 of the sorted labels, 16 hex digits."""
    text = "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Alert:
    """One alert instance: a rule applied to a subject, from pending to resolved."""

    rule: RuleInfo
    subject: Subject
    state: AlertState
    since_ms: int  # event time the condition became true (pending since)
    value: float
    threshold: float | None
    detail: str = ""
    fired_ms: int | None = None  # event time it started firing (Alertmanager startsAt)
    resolved_ms: int | None = None
    labels: Labels = ()
    fingerprint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    recent: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=RECENT))  # (event ms, value)

    def __post_init__(self) -> None:
        if not self.recent:
            self.recent.append((self.since_ms, self.value))
        if not self.labels:
            self.labels = (("alertname", self.rule.name), ("severity", self.rule.severity.value),
                           *self.subject.labels)
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.labels)

    @property
    def summary(self) -> str:
        rule = self.rule
        template = rule.summary
        if self.state is AlertState.RESOLVED:
            template = rule.resolved or template.replace("{subject}: ", "{subject}: resolved: ", 1)
        threshold = "" if self.threshold is None else _num(self.threshold)
        clear = "" if rule.clear is None else _num(rule.clear)
        return template.format(subject=self.subject.name, value=_num(self.value), unit=rule.unit,
                               threshold=threshold, clear=clear, detail=self.detail)


def _num(value: float) -> str:
    return f"{value:.4g}"
