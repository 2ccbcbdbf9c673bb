"""Alert state on disk, so that a restarted pipeline neither pages twice nor forgets what is firing.

What is kept: every open alert (pending with its start, firing with its start), and when each device
was last heard. Per-series windows (rate, flat-line, Hampel) are not kept: they refill in a few readings.
Written atomically: a temporary file in the same directory, fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from citytelemetry.alerts.delivery import Notice
from citytelemetry.alerts.model import Alert, AlertState, RuleInfo, Subject
from citytelemetry.atomicfile import replace_file

log = logging.getLogger(__name__)
VERSION = 1


@dataclass(slots=True)
class SavedState:
    alerts: list[Alert] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)  # alerts whose rule or subject is gone
    last_seen: dict[str, int] = field(default_factory=dict)
    offline_since: dict[str, int] = field(default_factory=dict)
    queued: list[Notice] = field(default_factory=list)  # events Alertmanager had not taken yet
    resolved: list[tuple[int, Notice]] = field(default_factory=list)  # (re-sent until, wall ms; resolution)


def _alert_record(alert: Alert) -> dict[str, Any]:
    return {"rule": alert.rule.key, "subject": alert.subject.key, "state": alert.state.value,
            "since_ms": alert.since_ms, "fired_ms": alert.fired_ms, "value": alert.value,
            "threshold": alert.threshold, "detail": alert.detail, "fingerprint": alert.fingerprint,
            "labels": dict(alert.labels), "summary": alert.summary}


def encode_state(alerts: Iterable[Alert], last_seen: Mapping[str, int], offline_since: Mapping[str, int],
                 queued: Iterable[Notice], resolved: Iterable[tuple[int, Notice]] = ()) -> bytes:
    """The state as JSON bytes: built on the event loop (a consistent snapshot), written elsewhere."""
    document = {"version": VERSION, "alerts": [_alert_record(a) for a in alerts],
                "last_seen": dict(last_seen), "offline_since": dict(offline_since),
                "queued": [asdict(n) for n in queued],
                "resolved": [{"until_ms": until, **asdict(n)} for until, n in resolved]}
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def write_atomic(path: Path, data: bytes) -> None:
    replace_file(path, data, mode=0o644)


def load_state(path: Path, rules: Mapping[str, RuleInfo], subjects: Mapping[str, Subject]) -> SavedState:
    """The saved state, matched against the current rules; a missing file is an empty state, an
    unreadable one is logged and set aside (renamed ``*.corrupt``) rather than stopping the pipeline."""
    try:
        return _parse(json.loads(path.read_bytes()), rules, subjects)
    except FileNotFoundError:
        return SavedState()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.error("alert state %s is unreadable (%s: %s); starting without it", path,  # noqa: TRY400
                  type(exc).__name__, exc)
        path.replace(path.with_name(path.name + ".corrupt"))
        return SavedState()


def _parse(document: dict[str, Any], rules: Mapping[str, RuleInfo], subjects: Mapping[str, Subject]) -> SavedState:
    if document.get("version") != VERSION:
        raise ValueError(f"version {document.get('version')!r}, expected {VERSION}")
    state = SavedState(last_seen={str(k): int(v) for k, v in document["last_seen"].items()},
                       offline_since={str(k): int(v) for k, v in document["offline_since"].items()},
                       queued=[Notice(**n) for n in document["queued"]],
                       resolved=[(int(r.pop("until_ms")), Notice(**r)) for r in document.get("resolved", [])])
    for record in document["alerts"]:
        rule, subject = rules.get(record["rule"]), subjects.get(record["subject"])
        if rule is None or subject is None:
            state.orphans.append(record)
            continue
        alert = Alert(rule, subject, AlertState(record["state"]), int(record["since_ms"]), float(record["value"]),
                      None if record["threshold"] is None else float(record["threshold"]), str(record["detail"]),
                      fired_ms=None if record["fired_ms"] is None else int(record["fired_ms"]))
        state.alerts.append(alert)
    return state
