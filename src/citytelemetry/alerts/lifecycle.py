"""The alert state machine: pending -> firing -> resolved, on event time.

Rules report a condition for a subject at a time: ``True`` (past the trigger level), ``False`` (back past
the clear level) or ``None`` (in the hysteresis band between the two). The tracker turns that into
transitions:

    (none) --True--> pending --True, held for `for`--> firing --False--> resolved
              pending --False/None--> (dropped, nobody was told)     firing --None--> firing (hysteresis)

Only firing and resolved are announced (``on_transition``); pending alerts live here alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from citytelemetry.alerts.model import Alert, AlertState, RuleInfo, Subject

Transition = Callable[[Alert], None]


class Tracker:
    __slots__ = ("_on_transition", "_open_of", "changed", "open")

    def __init__(self, on_transition: Transition) -> None:
        self.open: dict[tuple[str, str], Alert] = {}
        self._open_of: dict[str, set[str]] = {}  # rule key -> the subject keys of its alerts in ``open``
        self._on_transition = on_transition
        self.changed = False  # something to persist since the last save

    def update(self, rule: RuleInfo, subject: Subject, active: bool | None, value: float,
               threshold: float | None, ts_ms: int, detail: str = "") -> None:
        key = (rule.key, subject.key)
        alert = self.open.get(key)
        if alert is None:
            if active is True:
                alert = Alert(rule, subject, AlertState.PENDING, ts_ms, value, threshold, detail)
                self.open[key] = alert
                self.open_of(rule.key).add(subject.key)
                self.changed = True
                if rule.for_ms <= 0:
                    self._fire(alert, ts_ms)
            return
        alert.value, alert.threshold, alert.detail = value, threshold, detail
        alert.recent.append((ts_ms, value))
        if active is True:
            if alert.state is AlertState.PENDING and ts_ms - alert.since_ms >= rule.for_ms:
                self._fire(alert, ts_ms)
        elif active is False or alert.state is AlertState.PENDING:
            del self.open[key]
            self.open_of(rule.key).discard(subject.key)
            self.changed = True
            if alert.state is AlertState.FIRING:
                alert.state, alert.resolved_ms = AlertState.RESOLVED, max(ts_ms, alert.fired_ms or ts_ms)
                self._on_transition(alert)

    def is_open(self, rule: RuleInfo, subject: Subject) -> bool:
        return (rule.key, subject.key) in self.open

    def open_of(self, rule_key: str) -> set[str]:
        """The subject keys of a rule's open alerts: the same set for the tracker's life, kept with
        ``open``, so a rule holds it and asks per reading without building a key (rules.OpenAlerts)."""
        found = self._open_of.get(rule_key)
        if found is None:
            found = self._open_of[rule_key] = set()
        return found

    def _fire(self, alert: Alert, ts_ms: int) -> None:
        alert.state, alert.fired_ms = AlertState.FIRING, ts_ms
        self.changed = True
        self._on_transition(alert)

    def firing(self) -> list[Alert]:
        return [a for a in self.open.values() if a.state is AlertState.FIRING]

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Alerts from the state file: back in place without a transition (they were announced before)."""
        for alert in alerts:
            self.open[(alert.rule.key, alert.subject.key)] = alert
            self.open_of(alert.rule.key).add(alert.subject.key)
