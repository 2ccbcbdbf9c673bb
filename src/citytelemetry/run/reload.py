"""Reload device profiles, inventory and alert rules without a restart (SIGHUP, POST /-/reload, or a
file watch: ``pipeline.reload_watch_s``).

All or nothing. The new set is loaded and checked whole in a worker thread while messages keep
flowing; if any file is wrong nothing changes: the problems are logged with file and key, counted
(``citytelemetry_reloads_total{result="refused"}``) and the old set keeps running. Otherwise the swap
is one synchronous step on the event loop, so it falls between two messages:

- devices added are accepted from the next message, devices removed are refused (``unknown_device``);
- per-device state (sequence window, rate-limit bucket, completeness counts) of every device that
  remains is kept; a changed reporting interval applies to the device's next reading;
- a changed threshold applies to the next reading; open alerts of rules that remain stay open (with
  the new levels), a firing alert whose rule or device is gone is resolved;
- a partitioned member (``pipeline.partition``) then subscribes, on the open connection, to the topics
  of the devices added that it owns and unsubscribes those of the devices removed; every later
  reconnect uses the new set (``ingest.member_topics``). A topic the broker refuses is named in the
  report and counted (``citytelemetry_subscriptions_refused_total``).

Only those files are read again. Every setting (the TOML file, ``CITYTELEMETRY_*``) keeps the value
it had at start, including which directories are read: a setting changed in the file since is named
in the report and the log as taking effect at the next restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from citytelemetry.alerts.rulefiles import AlertRuleError, load_rule_files
from citytelemetry.config import ConfigError, Settings
from citytelemetry.ingest.member_topics import MemberTopics, TopicsOutcome
from citytelemetry.ingest.partition import Subscription
from citytelemetry.observability.completeness import CompletenessTracker
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.profiles import Catalog, ProfileError, load_catalog
from citytelemetry.profiles.diff import CatalogDiff, diff_catalogs
from citytelemetry.run.handler import MessageHandler
from citytelemetry.sink.deadletter import DeadLetterFormatter
from citytelemetry.validate import MessageValidator
from citytelemetry.validate.ratelimit import DeviceRateLimit

if TYPE_CHECKING:
    from citytelemetry.alerts.evaluator import AlertEngine

log = logging.getLogger("citytelemetry.pipeline")


@dataclass(slots=True, frozen=True)
class ReloadReport:
    applied: bool
    problems: tuple[str, ...] = ()  # why it was refused: "file: key: message" lines
    catalog: CatalogDiff | None = None
    rules_added: tuple[str, ...] = ()
    rules_removed: tuple[str, ...] = ()
    rules_changed: tuple[str, ...] = ()
    rules_reloaded: bool = False  # False: no alert engine runs (alerts.enabled = false)
    restart_needed: tuple[str, ...] = ()  # settings changed since start: not applied until a restart
    warnings: tuple[str, ...] = ()
    subscriptions: TopicsOutcome | None = None  # a partitioned member's topics on the open connection

    def lines(self) -> list[str]:
        if not self.applied:
            return ["reload refused, nothing changed:", *(f"  {p}" for p in self.problems)]
        out = [f"reloaded: {self.catalog.summary() if self.catalog else 'no catalog'}"]
        rules = [f"{label} {len(keys)} ({', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''})"
                 for label, keys in (("added", self.rules_added), ("removed", self.rules_removed),
                                     ("changed", self.rules_changed)) if keys]
        if self.rules_reloaded:
            out.append(f"alert rules: {'; '.join(rules) or 'none changed'}")
        else:
            out.append("alert rules: not read (alerting is off)")
        if self.restart_needed:
            out.append("settings changed since start, not applied until a restart: " + ", ".join(self.restart_needed))
        if self.subscriptions is not None:
            out += self.subscriptions.lines()
        out += self.warnings
        return out

    def as_json(self) -> dict[str, Any]:
        catalog = self.catalog
        return {
            "applied": self.applied, "problems": list(self.problems),
            "devices": {"added": list(catalog.devices_added), "removed": list(catalog.devices_removed),
                        "changed": list(catalog.devices_changed)} if catalog else {},
            "profiles": {"added": list(catalog.profiles_added), "removed": list(catalog.profiles_removed),
                         "changed": list(catalog.profiles_changed)} if catalog else {},
            "rules": {"added": list(self.rules_added), "removed": list(self.rules_removed),
                      "changed": list(self.rules_changed)},
            "rules_reloaded": self.rules_reloaded, "restart_needed": list(self.restart_needed),
            "warnings": list(self.warnings),
            "subscriptions": self.subscriptions.as_json() if self.subscriptions is not None else None,
        }


@dataclass(slots=True)
class _Prepared:
    catalog: Catalog
    validator: MessageValidator
    rates: dict[str, float]
    report: ReloadReport
    swap_rules: Callable[[], None] | None = None
    subscription: Subscription | None = None  # a partitioned member's topics for the new inventory


@dataclass(slots=True)
class ReloadParts:
    """What a reload replaces or updates in place; ``run.build`` hands them over."""

    catalog: Catalog
    handler: MessageHandler
    validator: MessageValidator
    rate_limit: DeviceRateLimit
    completeness: CompletenessTracker
    make_validator: Callable[[Catalog], MessageValidator]
    evaluator: AlertEngine | None = None  # when alerts are on
    topics: MemberTopics | None = None  # a partitioned member's subscriptions


def _flat(model: BaseModel) -> dict[str, Any]:
    def walk(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                yield from walk(f"{prefix}{name}.", getattr(value, name))
        else:
            yield prefix.rstrip("."), value

    return dict(walk("", model))


def changed_settings(running: Settings, on_disk: Settings) -> tuple[str, ...]:
    """Keys whose value differs (secrets compared, never shown)."""
    old, new = _flat(running), _flat(on_disk)
    return tuple(sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)))


class Reloader:
    def __init__(self, settings: Settings, parts: ReloadParts, stats: PipelineStats, *,
                 reread_settings: Callable[[], Settings] | None = None) -> None:
        """``reread_settings`` loads the configuration as at start (``citytelemetry run`` gives it), to name
        what changed since; without it a reload does not look."""
        self._settings = settings
        self._parts = parts
        self._stats = stats
        self._reread_settings = reread_settings
        self._lock = asyncio.Lock()
        stats.catalog_devices = len(parts.catalog.devices)
        self._files_at_start = self._files()  # just after the catalog was loaded: the watch starts from here

    @property
    def catalog(self) -> Catalog:
        return self._parts.catalog

    async def watch(self, interval_s: float) -> None:
        """``pipeline.reload_watch_s``: reload when the files changed and then held still for one look."""
        applied = seen = self._files_at_start
        while True:
            await asyncio.sleep(interval_s)
            now = self._files()
            if now == seen and now != applied:
                log.info("reload: files changed under the watched directories")
                await self.reload()
                applied = now  # refused or not: try again only after the next change
            seen = now

    def _files(self) -> dict[Path, tuple[int, int]]:
        """(mtime, size) of every YAML file that a reload reads."""
        p, found = self._settings.pipeline, {}
        directories = [p.profiles_dir, p.inventory_dir]
        if self._parts.evaluator is not None:
            directories.append(self._settings.alerts.rules_dir)
        for directory in directories:
            for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
                with contextlib.suppress(OSError):  # gone between glob and stat: the next look sees it
                    stat = path.stat()
                    found[path] = (stat.st_mtime_ns, stat.st_size)
        return found

    async def reload(self) -> ReloadReport:
        async with self._lock:  # a second SIGHUP waits for the first
            try:
                prepared = await asyncio.to_thread(self._prepare)
            except (ProfileError, AlertRuleError) as exc:
                return self._refused(tuple(exc.problems))
            except Exception as exc:  # a bug of ours while preparing: nothing was swapped, say so
                log.exception("reload failed while preparing; nothing changed")
                return self._refused((f"internal error: {type(exc).__name__} (see the log)",))
            self._apply(prepared)
            self._stats.reloads_applied += 1
            self._stats.catalog_devices = len(prepared.catalog.devices)
            report = await self._follow_topics(prepared.report)
            log.log(logging.WARNING if report.subscriptions and report.subscriptions.refused else logging.INFO,
                    "%s", "\n".join(report.lines()))
            return report

    async def _follow_topics(self, report: ReloadReport) -> ReloadReport:
        """After the swap: the open connection subscribes to the new set (network round trips, so not in
        the swap's one step; messages of a new device that come first are refused as before)."""
        topics = self._parts.topics
        if topics is None:
            return report
        outcome = await topics.follow()
        self._stats.subscriptions_refused += len(outcome.refused)
        return replace(report, subscriptions=outcome)

    def _refused(self, problems: tuple[str, ...]) -> ReloadReport:
        self._stats.reloads_refused += 1
        report = ReloadReport(applied=False, problems=problems)
        log.error("%s", "\n".join(report.lines()))
        return report

    # -- in a worker thread: read and check everything, change nothing --------------------------------
    def _prepare(self) -> _Prepared:
        p, parts = self._settings.pipeline, self._parts
        catalog = load_catalog(p.profiles_dir, p.inventory_dir)  # raises ProfileError: file and key
        changes, swap_rules = None, None
        if parts.evaluator is not None:
            rules = load_rule_files(self._settings.alerts.rules_dir, catalog)  # raises AlertRuleError
            changes, swap_rules = parts.evaluator.prepare_rules(catalog, rules)
        restart_needed, warnings = self._settings_on_disk()
        added, removed, changed = (changes.added, changes.removed, changes.changed) if changes else ([], [], [])
        report = ReloadReport(applied=True, catalog=diff_catalogs(parts.catalog, catalog), rules_added=tuple(added),
                              rules_removed=tuple(removed), rules_changed=tuple(changed), rules_reloaded=bool(changes),
                              restart_needed=restart_needed, warnings=warnings)
        return _Prepared(catalog=catalog, validator=parts.make_validator(catalog),
                         rates=DeviceRateLimit.from_catalog(catalog).rates, report=report, swap_rules=swap_rules,
                         subscription=parts.topics.prepare(catalog.devices.values()) if parts.topics else None)

    def _settings_on_disk(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if self._reread_settings is None:
            return (), ()
        try:
            return changed_settings(self._settings, self._reread_settings()), ()
        except ConfigError as exc:
            first = str(exc).splitlines()[0]
            return (), (f"warning: the configuration no longer loads ({first}); fix it before the next restart",)

    # -- on the event loop, in one step: between two messages -----------------------------------------
    def _apply(self, new: _Prepared) -> None:
        parts = self._parts
        if new.swap_rules is not None:  # first: the one step that does more than assign
            new.swap_rules()
        new.validator.sequences = parts.validator.sequences  # every device's window, kept
        parts.rate_limit.rates = new.rates  # buckets kept; a changed interval applies to the next reading
        parts.completeness.use_catalog(new.catalog)
        parts.handler.use_catalog(new.catalog, new.validator,
                                  DeadLetterFormatter(new.catalog, self._settings.mqtt.client_id))
        parts.catalog, parts.validator = new.catalog, new.validator
        if parts.topics is not None and new.subscription is not None:
            parts.topics.use(new.subscription)  # the next reconnect's set; the open connection follows next
