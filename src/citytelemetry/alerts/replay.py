"""Replay messages or readings through the rules, offline, on their own time: what would have fired.

The wall clock of the engine is the replayed time, so a day of data replays in seconds and time rules
(silence, coverage) see the same gaps they would have seen live. Nothing is sent to Alertmanager and
no state file is read or written.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from citytelemetry.alerts.evaluator import AlertEngine
from citytelemetry.alerts.model import Alert, AlertState
from citytelemetry.alerts.rulefiles import LoadedRules
from citytelemetry.config import Settings
from citytelemetry.contracts import InboundMessage
from citytelemetry.profiles import Catalog
from citytelemetry.records import Reading
from citytelemetry.validate import Limits, MessageValidator


@dataclass(slots=True, frozen=True)
class Transition:
    ts_ms: int
    state: AlertState
    name: str
    severity: str
    subject: str
    summary: str
    labels: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class ReplayResult:
    transitions: list[Transition] = field(default_factory=list)
    readings: int = 0
    rejected: int = 0
    still_firing: list[Transition] = field(default_factory=list)


class _Clock:
    __slots__ = ("t",)

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _NoAck:
    def settle(self) -> None:
        return None


class Replayer:
    """An engine on a replayed clock; feed it messages (``message``) or readings (``readings``)."""

    def __init__(self, settings: Settings, catalog: Catalog, *, rules: LoadedRules | None = None,
                 only: Sequence[str] = (), tick_ms: int = 5000) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ct-replay-")
        alerts = settings.alerts.model_copy(update={"state_file": Path(self._tmp.name) / "state.json"})
        # a recording holds every device: judged as one process, not as a member's share without its peers
        pipeline = settings.pipeline.model_copy(update={"partition": None})
        self.settings = settings.model_copy(update={"alerts": alerts, "pipeline": pipeline})
        self.clock = _Clock()
        self.result = ReplayResult()
        self._only = frozenset(only)
        self.engine = AlertEngine(self.settings, catalog, lambda _lines: None, clock=self.clock, rules=rules,
                                  on_transition=self._record)
        p = settings.pipeline
        self.validator = MessageValidator(
            catalog, Limits(max_payload_bytes=p.max_payload_bytes, max_readings_per_message=p.max_readings_per_message,
                            max_future_s=p.max_future_s, max_age_s=p.max_age_s),
            topic_prefix=settings.mqtt.topic_prefix, clock_ms=lambda: int(self.clock.t * 1000))
        self.tick_ms = tick_ms
        self._next_tick_ms: int | None = None

    def _record(self, alert: Alert) -> None:
        if self._only and alert.rule.name not in self._only:
            return
        ts = alert.resolved_ms if alert.state is AlertState.RESOLVED else alert.fired_ms
        self.result.transitions.append(Transition(ts or alert.since_ms, alert.state, alert.rule.name,
                                                  alert.rule.severity.value, alert.subject.key, alert.summary,
                                                  alert.labels))

    def _advance(self, now_ms: int) -> None:
        if self._next_tick_ms is None:
            self._next_tick_ms = now_ms + self.tick_ms
        while now_ms >= self._next_tick_ms:
            self.clock.t = self._next_tick_ms / 1000
            self.engine.tick()
            self._next_tick_ms += self.tick_ms
        self.clock.t = max(self.clock.t, now_ms / 1000)

    def message(self, topic: str, payload: bytes, at_ms: int) -> None:
        self._advance(at_ms)
        outcome = self.validator(InboundMessage(topic, payload, at_ms, _NoAck()))
        self.result.rejected += len(outcome.rejections)
        self.readings(outcome.readings, at_ms)

    def readings(self, readings: Sequence[Reading], at_ms: int | None = None) -> None:
        if at_ms is None:
            at_ms = max((r.timestamp_ms for r in readings), default=int(self.clock.t * 1000))
        self._advance(at_ms)
        if readings:
            self.result.readings += sum(1 for r in readings if r.seq >= 0)
            self.engine.observe(readings)

    def finish(self, until_ms: int | None = None) -> ReplayResult:
        if until_ms is not None:
            self._advance(until_ms)
        for alert in self.engine.firing():
            if not self._only or alert.rule.name in self._only:
                self.result.still_firing.append(Transition(
                    alert.fired_ms or alert.since_ms, alert.state, alert.rule.name, alert.rule.severity.value,
                    alert.subject.key, alert.summary, alert.labels))
        self._tmp.cleanup()
        return self.result


def replay_messages(settings: Settings, catalog: Catalog, messages: Iterable[tuple[str, bytes, int]], *,
                    rules: LoadedRules | None = None, only: Sequence[str] = (), tail_ms: int = 0) -> ReplayResult:
    """``messages``: (topic, payload, time ms) in time order, e.g. from ``DistrictSimulator.messages()``."""
    replayer = Replayer(settings, catalog, rules=rules, only=only)
    last = 0
    for topic, payload, at_ms in messages:
        replayer.message(topic, payload, at_ms)
        last = at_ms
    return replayer.finish(last + tail_ms if last else None)
