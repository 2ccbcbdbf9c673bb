"""The in-stream alert evaluator: the pipeline's ``AlertEvaluator``.

    observe(readings)  rules of each reading's device type, on device time (in the consumer's task)
    run()              time rules (silence, coverage, completeness) every evaluation interval, state saves,
                       and delivery to Alertmanager, as named tasks of one TaskGroup, until cancelled
    follow(behind)     the consumer's own lag: while ``behind()``, time rules hold (see ``tick``)
    aclose()           saves the state, hands Alertmanager what is queued (bounded), closes the session

Transitions (firing, resolved) go three ways: a ``ct_alerts`` point through ``emit``, an event on the
Alertmanager queue, and a log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from citytelemetry.alerts.affinity import member_catalog
from citytelemetry.alerts.clock import EventClock, WallClock
from citytelemetry.alerts.compile import RuleSet, compile_rules
from citytelemetry.alerts.delivery import AlertmanagerQueue, Notice
from citytelemetry.alerts.history import alert_line
from citytelemetry.alerts.lifecycle import Tracker
from citytelemetry.alerts.links import Links
from citytelemetry.alerts.model import Alert, AlertState
from citytelemetry.alerts.observer import ReadingObserver
from citytelemetry.alerts.page import AlertPages
from citytelemetry.alerts.peerlink import PeerLink
from citytelemetry.alerts.peers import SiteTallies, attach, shares_of, site_tallies
from citytelemetry.alerts.rulefiles import LoadedRules, load_rule_files
from citytelemetry.alerts.state import SavedState, encode_state, load_state, write_atomic
from citytelemetry.config import Settings
from citytelemetry.contracts import AlertCounters, EmitLines
from citytelemetry.profiles import Catalog
from citytelemetry.records import Reading

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 5.0
RECENT_RESOLVED = 500  # resolved alerts kept for their pages (alerts/page.py)


def _never() -> bool:
    return False


class AlertEngine:
    def __init__(self, settings: Settings, catalog: Catalog, emit: EmitLines, *,
                 clock: WallClock = time.time, rules: LoadedRules | None = None,
                 on_transition: Callable[[Alert], None] | None = None) -> None:
        a = settings.alerts
        self.settings = a
        self._emit = emit
        self._on_transition = on_transition
        self.tracker = Tracker(self._transition)
        self.links = Links(settings)
        loaded = rules if rules is not None else load_rule_files(a.rules_dir, catalog)
        self._pipeline = settings.pipeline  # partitioned: rules over the member's own share of the devices
        self.ruleset: RuleSet = compile_rules(member_catalog(self._pipeline, catalog, loaded.rules), loaded,
                                              self.tracker, runbook_base=self.links.runbooks)
        self.clock = EventClock(clock)
        # partitioned: the site rules' figures over every member (alerts/peers.py), through peer_link
        self.site: SiteTallies | None = None
        self.peer_link: PeerLink | None = None
        if self._pipeline.partition is not None:
            self.site = site_tallies(settings, catalog, loaded, self.clock.wall_ms)
            self.peer_link = PeerLink(settings.mqtt, self.site, lambda: self.clock.mark_ms,
                                      interval_s=a.evaluation_interval_s)
            attach(self.ruleset, self.site)
        links = self.links
        self.delivery = AlertmanagerQueue(settings.alertmanager.url, timeout_s=a.request_timeout_s,
                                          max_queued=a.max_queued, resend_interval_s=a.resend_interval_s,
                                          resolved_resend_s=a.resolved_resend_s, wall_ms=self.clock.wall_ms,
                                          generator_url=lambda n: links.alert(n.labels["alertname"], n.fingerprint),
                                          ca_file=settings.alertmanager.ca_file)
        self.resolved: OrderedDict[str, Alert] = OrderedDict()  # fingerprint -> the latest resolutions
        # add_routes: the pipeline's HTTP server serves these pages
        self.pages = AlertPages(self, a.docs_dir, a.dashboards_url)
        self.observer = ReadingObserver(self.clock, self.ruleset, self.tracker)
        # observe(readings), per message: the compiled observer's own guarded method, bound here so that the
        # handler calls into compiled code without an interpreted frame in between (~880 instructions).
        self.observe: Callable[[Sequence[Reading]], None] = self.observer.observe
        self.transitions = self._tick_errors = 0
        self._behind: Callable[[], bool] = _never
        self.held_ticks = 0  # evaluation ticks skipped because the consumer was behind
        self._last_tick: tuple[int, int | None] = (self.clock.wall_ms(), None)  # (wall, event mark) at the last tick
        self._last_save_ms = self.clock.wall_ms()
        self._restore(load_state(a.state_file, self.ruleset.rules_by_key, self.ruleset.subjects))

    # -- in-stream ---------------------------------------------------------------------------------
    @property
    def errors(self) -> int:
        """Rule failures: per message (the observer's guard) and per evaluation tick."""
        return self.observer.errors + self._tick_errors

    @property
    def readings(self) -> int:
        return self.observer.readings

    def counters(self) -> AlertCounters:
        d = self.delivery.stats
        return AlertCounters(readings=self.observer.readings, rule_errors=self.errors, transitions=self.transitions,
                             firing=len(self.tracker.firing()), delivered=d.alerts_sent,
                             delivery_failures=d.failures, dropped=d.dropped, queued=len(self.delivery.queue))

    def follow(self, behind: Callable[[], bool]) -> None:
        """``behind()``: is the consumer behind the broker (disconnected, window full, messages unhandled)?"""
        self._behind = behind

    def tick(self) -> None:
        """Time rules at the current event time (nothing before the first reading).

        Not while the consumer is behind: readings newer than the event time are then still at the
        broker or in the receive window, and in a backlog one device's next message may lie minutes of
        device time after another's (two gateways' backlogs one after the other; a batch of ten 10-s
        readings spans 100 s). Judged now, every device whose turn has not come looks silent. Behind is
        what the consumer says (``follow``), or event time having run more than ``catch_up_speed`` times
        faster than the wall clock since the last tick: a backlog being replayed. Holding only delays: a
        device that is really silent is still silent once the consumer has caught up, and fires then."""
        if not self.clock.started:
            return
        catching_up = self._catching_up()  # every tick, so that the speed is always over one interval
        if self._behind() or catching_up:
            self.clock.hold()
            if not self.held_ticks % 60:
                log.info("time-based alert rules wait: the consumer is behind the broker")
            self.held_ticks += 1
            return
        now = self.clock.now_ms()
        for rule in self.ruleset.time_rules:
            rule(now)

    def _catching_up(self) -> bool:
        wall, mark = self.clock.wall_ms(), self.clock.mark_ms
        last_wall, last_mark = self._last_tick
        self._last_tick = (wall, mark)
        if mark is None or last_mark is None:
            return last_mark is None and mark is not None  # the first readings since start: not judged yet
        return mark - last_mark > self.settings.catch_up_speed * max(1, wall - last_wall)

    def _transition(self, alert: Alert) -> None:
        self.transitions += 1
        site = self.site  # a site rule's transition: one ct_alerts point, from the lowest live member
        if site is None or alert.rule.key not in site.whole or site.writes_history():
            self._emit([alert_line(alert)])
        self.delivery.put(alert)
        if alert.state is AlertState.RESOLVED:
            self.resolved[alert.fingerprint] = alert
            self.resolved.move_to_end(alert.fingerprint)
            if len(self.resolved) > RECENT_RESOLVED:
                self.resolved.popitem(last=False)
        log.info("alert %s: %s [%s] %s", alert.state.value, alert.rule.name, alert.rule.severity.value, alert.summary)
        if self._on_transition is not None:
            self._on_transition(alert)

    # -- background --------------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            # self.firing, not self.tracker.firing: a reload replaces the tracker
            group.create_task(self.delivery.run(self.firing), name="alertmanager-delivery")
            group.create_task(self._time_loop(), name="alert-time-rules")
            if self.peer_link is not None:
                group.create_task(self.peer_link.run(), name="alert-peer-tallies")

    async def _time_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.evaluation_interval_s)
            try:
                self.tick()
            except Exception:
                self._tick_errors += 1
                log.exception("time-based alert rules failed")
            wall = self.clock.wall_ms()
            if self.tracker.changed and wall - self._last_save_ms >= self.settings.state_save_interval_s * 1000:
                data = self._snapshot()
                await asyncio.to_thread(write_atomic, self.settings.state_file, data)
                self._last_save_ms = wall

    async def aclose(self) -> None:
        try:
            await self.delivery.aclose(CLOSE_TIMEOUT_S)
        finally:
            self.save()

    # -- state -------------------------------------------------------------------------------------
    def save(self) -> None:
        try:
            write_atomic(self.settings.state_file, self._snapshot())
        except OSError as exc:
            log.error("cannot write the alert state %s: %s", self.settings.state_file, exc)  # noqa: TRY400

    def _snapshot(self) -> bytes:
        self.tracker.changed = False
        presence = self.ruleset.presence
        return encode_state(self.tracker.open.values(), presence.last_seen, presence.offline_since,
                            self.delivery.queue, self.delivery.resolved.values())

    def _restore(self, saved: SavedState) -> None:
        self.tracker.restore(saved.alerts)
        presence = self.ruleset.presence
        presence.last_seen.update({k: v for k, v in saved.last_seen.items() if k in self.ruleset.subjects})
        presence.offline_since.update({k: v for k, v in saved.offline_since.items() if k in self.ruleset.subjects})
        self.observer.resume = bool(saved.last_seen)
        for notice in saved.queued:
            self.delivery.put_notice(notice)
        # Firing alerts and recent resolutions go with the first re-send, at once when run() starts
        # (criticals first): Alertmanager may have restarted too, and it de-duplicates the rest.
        wall = self.clock.wall_ms()
        self.delivery.resolved.update({n.fingerprint: (until, n) for until, n in saved.resolved if until > wall})
        for record in saved.orphans:  # its rule or device is gone: close it rather than let it hang
            if record["state"] == AlertState.FIRING.value:
                summary = f"{record['summary']} (rule or device removed; closed at restart)"
                self.delivery.put_notice(Notice(record["labels"], {"summary": summary}, record["since_ms"], wall))
        if saved.alerts or saved.orphans:
            log.info("alert state restored: %d open alerts (%d firing), %d closed as orphans", len(saved.alerts),
                     len(self.tracker.firing()), len(saved.orphans))

    def add_routes(self, app: web.Application) -> None:
        self.pages.add_routes(app)

    def firing(self) -> list[Alert]:
        return self.tracker.firing()

    # -- reload (run/reload.py) -------------------------------------------------------------------
    def prepare_rules(self, catalog: Catalog, rules: LoadedRules) -> tuple[RuleChanges, Callable[[], None]]:
        """Compile ``rules`` for ``catalog`` now, changing nothing; the returned call swaps them in (between
        two readings). Open alerts of rules and subjects that remain stay open, with the new rule's levels;
        a firing alert whose rule or subject is gone is resolved. Per-series windows refill, as at restart."""
        tracker = Tracker(self._transition)
        ruleset = compile_rules(member_catalog(self._pipeline, catalog, rules.rules), rules, tracker,
                                runbook_base=self.links.runbooks)
        whole = None if self.site is None else shares_of(self._pipeline, catalog, rules)
        old, new = self.ruleset.rules_by_key, ruleset.rules_by_key
        changes = RuleChanges(added=sorted(new.keys() - old.keys()), removed=sorted(old.keys() - new.keys()),
                              changed=sorted(k for k in old.keys() & new.keys() if old[k] != new[k]))

        def swap() -> None:
            if self.site is not None and whole is not None:  # peers' reports and our figures of kept rules stay
                site = self.site  # (emptied, our next report would read "not judged" to the peers)
                site.whole, site.local = whole, {k: v for k, v in site.local.items() if k in whole}
                attach(ruleset, site)
            self._carry_over(ruleset, tracker)
            self.ruleset, self.tracker = ruleset, tracker
            old, self.observer = self.observer, ReadingObserver(self.clock, ruleset, tracker)
            self.observer.readings, self.observer.resume = old.readings, old.resume
            self.observer.early_offline, self.observer.errors = old.early_offline, old.errors
            self.observe = self.observer.observe  # the next message meets the new rules
            tracker.changed = True

        return changes, swap

    def _carry_over(self, ruleset: RuleSet, tracker: Tracker) -> None:
        rules, subjects, wall = ruleset.rules_by_key, ruleset.subjects, self.clock.wall_ms()
        for alert in self.tracker.open.values():
            rule, subject = rules.get(alert.rule.key), subjects.get(alert.subject.key)
            if rule is not None and subject is not None:
                tracker.restore([Alert(rule, subject, alert.state, alert.since_ms, alert.value, alert.threshold,
                                       alert.detail, fired_ms=alert.fired_ms)])
            elif alert.state is AlertState.FIRING:
                summary = f"{alert.summary} (rule or device removed; closed at reload)"
                self.delivery.put_notice(Notice(dict(alert.labels), {"summary": summary},
                                                alert.fired_ms or alert.since_ms, wall))
        old = self.ruleset.presence
        ruleset.presence.last_seen.update({k: v for k, v in old.last_seen.items() if k in subjects})
        ruleset.presence.offline_since.update({k: v for k, v in old.offline_since.items() if k in subjects})
        ruleset.clock_start[0] = self.ruleset.clock_start[0]


@dataclass(slots=True, frozen=True)
class RuleChanges:
    """Rule keys (``name/severity``) a reload adds, removes or changes (levels, ``for``, summary ...)."""

    added: list[str]
    removed: list[str]
    changed: list[str]
