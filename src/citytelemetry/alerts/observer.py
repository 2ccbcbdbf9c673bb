"""The per-reading half of the alert engine: each accepted reading through its device type's rules.

Split from ``evaluator.AlertEngine`` because it runs once per reading (compiled with mypyc, see
scripts/compile_hotpath.py), while the engine's async half (delivery, timers, state saves) stays
interpreted: this module has no coroutines, which mypyc compiles less faithfully.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from citytelemetry.alerts.clock import EventClock
from citytelemetry.alerts.compile import RuleSet
from citytelemetry.alerts.lifecycle import Tracker
from citytelemetry.alerts.rules import ReadingRule
from citytelemetry.measurements import DEVICE_STATUS
from citytelemetry.records import Reading

log = logging.getLogger("citytelemetry.alerts.evaluator")  # the engine's logger: one for the operator


def _newest(readings: list[Reading]) -> int | None:
    """The newest telemetry timestamp. Not max(..., default=None): builtins.max parses its keyword
    argument on every call (a few thousand instructions a message)."""
    newest: int | None = None
    for r in readings:
        if r.measurement != DEVICE_STATUS and (newest is None or r.timestamp_ms > newest):
            newest = r.timestamp_ms
    return newest


class ReadingObserver:
    def __init__(self, clock: EventClock, ruleset: RuleSet, tracker: Tracker) -> None:
        self.clock = clock
        self.ruleset = ruleset
        self.tracker = tracker
        self._by_type: dict[str, tuple[ReadingRule, ...]] = {k: tuple(v) for k, v in ruleset.by_type.items()}
        self._every: tuple[ReadingRule, ...] = tuple(ruleset.every_reading)
        # RuleSet is interpreted: its attributes read through getattr; these two objects are never replaced
        self._presence, self._clock_start = ruleset.presence, ruleset.clock_start
        self.readings = 0
        self.errors = 0  # messages whose rules raised (a bug of ours): counted, logged, ingestion goes on
        self.resume = False  # state was restored: the first reading restarts the presence clocks
        self.early_offline: set[str] = set()

    def observe(self, readings: Sequence[Reading]) -> None:
        """The handler calls this directly, per message (``AlertEngine.observe`` is this method): the rule
        guard is here so that no interpreted frame stands in between (~880 instructions a message)."""
        try:
            self._observe(readings)
        except Exception:  # a rule bug must not stop ingestion: count it, say it, go on
            self.errors += 1
            log.exception("alert rules failed on a message of %s", readings[0].device_id if readings else "?")

    def _observe(self, readings: Sequence[Reading]) -> None:
        if not isinstance(readings, list):  # the handler passes a list: iterated natively, not as a Sequence
            readings = list(readings)
        clock = self.clock
        newest = _newest(readings)
        if newest is not None:
            clock.advance(newest)
            if self._clock_start[0] is None:
                self._clock_start[0] = clock.start_ms
        now = clock.now_ms()
        presence, by_type, every = self._presence, self._by_type, self._every
        if clock.started and (self.resume or self.early_offline):
            self._on_start(now)
        for reading in readings:
            if reading.measurement == DEVICE_STATUS:
                self._status(reading, now)
                continue
            self.readings += 1
            presence.heard(reading.device_id, now)
            # rule.__call__(reading), not rule(reading): mypyc calls the former through the native vtable
            for rule in by_type.get(reading.measurement, ()):
                rule.__call__(reading)
            for count in every:
                count.__call__(reading)

    def _status(self, reading: Reading, now_ms: int) -> None:
        online = reading.fields.get("online") is True
        if self.clock.started:
            self._presence.status(reading.device_id, online=online, now_ms=now_ms)
        elif not online:  # before the first reading there is no event time yet: count from then
            self.early_offline.add(reading.device_id)
        else:
            self.early_offline.discard(reading.device_id)

    def _on_start(self, now_ms: int) -> None:
        for device_id in self.early_offline:
            self._presence.status(device_id, online=False, now_ms=now_ms)
        self.early_offline.clear()
        if self.resume:
            self._resume_presence(now_ms)

    def _resume_presence(self, now_ms: int) -> None:
        """After a restart, the downtime is not the devices' silence: count them heard now, except
        those already alerting (their alert must neither resolve nor fire again)."""
        self.resume = False
        silent = {a.subject.key for a in self.tracker.open.values() if a.rule.kind == "stale / offline"}
        presence = self._presence
        for device_id in presence.last_seen:
            if device_id not in silent:
                presence.last_seen[device_id] = now_ms
                presence.offline_since.pop(device_id, None)
