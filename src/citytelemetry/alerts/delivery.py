"""Delivery to Alertmanager API v2: ``POST /api/v2/alerts``, queued while it is unreachable.

Alert events (a firing, a resolution) wait in a bounded queue and leave in order, in batches; a failed
POST is retried with capped, jittered backoff, every attempt under a timeout. Firing alerts are also
re-sent every ``resend_interval_s`` (Alertmanager forgets an alert whose ``endsAt`` passes), and so are
resolutions for ``resolved_resend_s`` after they happened (as Prometheus does, 15 min by default): an
Alertmanager that restarted before notifying a resolution gets it again and announces it (it knows from
its notification log, in its data dir, that the alert was paged).

Every batch goes firing criticals first, warnings ``INHIBIT_SETTLE_S`` later and resolved criticals last,
so that every inhibiting critical is in Alertmanager before a warning it mutes could be notified, and
leaves after it: Alertmanager notifies an alert whose startsAt is older than group_wait at once, and its
inhibitor and dispatcher read new alerts concurrently, so a warning posted together with its critical
(after a restart, or when both fired before a send) leaked to chat. Alertmanager's start
time (``/api/v2/status`` uptime) is read before the criticals and again before the warnings: if it
restarted in between, the criticals went to the old process and are posted again first.

If the queue overflows, the oldest event is dropped and counted (``dropped``) and an error is logged:
never silently; the firing ones come back with the next re-send anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from citytelemetry.alerts.model import Alert, AlertState, Severity, fingerprint
from citytelemetry.sink.backoff import Backoff

log = logging.getLogger(__name__)
BATCH = 500
FIRING_TTL_MIN_S = 300.0  # endsAt of a firing alert: at least this far ahead (Prometheus uses 4 x resend)
INHIBIT_SETTLE_S = 0.5  # between the criticals and the warnings of a re-send (a POST takes milliseconds)


@dataclass(slots=True, frozen=True)
class Notice:
    """One alert as it is sent: built when the event happens, dated when it leaves."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_ms: int
    ends_ms: int | None  # None: firing

    @classmethod
    def of(cls, alert: Alert) -> Notice:
        rule = alert.rule
        annotations = {"summary": alert.summary, "description": rule.condition, "source": rule.source,
                       "runbook_url": rule.runbook, "value": f"{alert.value:.6g}"}
        if alert.threshold is not None:
            annotations["threshold"] = f"{alert.threshold:.6g}"
        ends = alert.resolved_ms if alert.state is AlertState.RESOLVED else None
        return cls(dict(alert.labels), annotations, alert.since_ms, ends)

    @property
    def fingerprint(self) -> str:
        return fingerprint(tuple(self.labels.items()))

    @property
    def critical(self) -> bool:
        return self.labels.get("severity") == Severity.CRITICAL.value

    def payload(self, wall_ms: int, ttl_ms: int, generator_url: str) -> dict[str, Any]:
        starts = min(self.starts_ms, wall_ms)
        ends = wall_ms + ttl_ms if self.ends_ms is None else max(starts, min(self.ends_ms, wall_ms))
        body: dict[str, Any] = {"labels": self.labels, "annotations": self.annotations, "startsAt": _iso(starts),
                                "endsAt": _iso(ends)}
        if generator_url:
            body["generatorURL"] = generator_url
        return body


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DeliveryError(Exception):
    """Alertmanager did not take a batch (unreachable, timeout, or a non-2xx status)."""


@dataclass(slots=True)
class DeliveryStats:
    batches_sent: int = 0
    alerts_sent: int = 0  # events and re-sends accepted by Alertmanager
    failures: int = 0  # failed attempts (each retried)
    dropped: int = 0  # events lost to a full queue (logged)
    resends: int = 0


class AlertmanagerQueue:
    """Owns the queue and the HTTP session; ``run`` is the sending loop, ``aclose`` tries a last time."""

    def __init__(self, url: str, *, timeout_s: float, max_queued: int, resend_interval_s: float,  # noqa: PLR0913 - keyword-only settings
                 generator_url: Callable[[Notice], str], wall_ms: Callable[[], int],
                 resolved_resend_s: float = 900.0, backoff: Backoff | None = None,
                 ca_file: Path | None = None) -> None:
        # Verification stays on; a private CA is added to it.
        self._ssl = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self.endpoint = url.rstrip("/") + "/api/v2/alerts"
        self.status_endpoint = url.rstrip("/") + "/api/v2/status"
        self.timeout_s, self.max_queued, self.resend_interval_s = timeout_s, max_queued, resend_interval_s
        self.generator_url, self.wall_ms = generator_url, wall_ms
        self.ttl_ms = round(max(4 * resend_interval_s, FIRING_TTL_MIN_S) * 1000)
        self.resolved_resend_ms = round(resolved_resend_s * 1000)
        self.resolved: dict[str, tuple[int, Notice]] = {}  # fingerprint -> (re-sent until, wall ms; notice)
        self.backoff = backoff or Backoff(base_s=0.5, cap_s=30.0)
        self.queue: deque[Notice] = deque()
        self.stats = DeliveryStats()
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    def put(self, alert: Alert) -> None:
        self.put_notice(Notice.of(alert))

    def put_notice(self, notice: Notice) -> None:
        if notice.ends_ms is None:
            self.resolved.pop(notice.fingerprint, None)  # firing again: its old resolution is history
        elif self.resolved_resend_ms > 0:
            self.resolved[notice.fingerprint] = (self.wall_ms() + self.resolved_resend_ms, notice)
        if len(self.queue) >= self.max_queued:
            self.queue.popleft()
            self.stats.dropped += 1
            log.error("alert queue full (%d): dropped the oldest event (%d dropped so far)", self.max_queued,
                      self.stats.dropped)
        self.queue.append(notice)
        self._wake.set()

    async def run(self, firing: Callable[[], Sequence[Alert]]) -> None:
        """Send queued events as they come, and every firing alert and recent resolution each resend
        interval (the first time at once: alerts restored from the state file); until cancelled."""
        loop = asyncio.get_running_loop()
        next_resend = loop.time()
        attempt = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_resend - loop.time())):
                    await self._wake.wait()
            self._wake.clear()
            resend = loop.time() >= next_resend
            try:
                await self._send_queued()
                if resend:
                    await self._resend([Notice.of(a) for a in firing()])
                    self.stats.resends += 1
                    next_resend = loop.time() + self.resend_interval_s
                attempt = 0
            except DeliveryError as exc:
                delay = self.backoff.delay(attempt)
                attempt += 1
                self.stats.failures += 1
                log.warning("Alertmanager %s: %s; %d events queued, retrying in %.1f s", self.endpoint, exc,
                            len(self.queue), delay)
                await asyncio.sleep(delay)
                self._wake.set()

    def recent_resolutions(self) -> list[Notice]:
        wall = self.wall_ms()
        for key in [k for k, (until, _) in self.resolved.items() if until < wall]:
            del self.resolved[key]
        return [notice for _, notice in self.resolved.values()]

    async def _resend(self, firing: Sequence[Notice]) -> None:
        notices = [*firing, *self.recent_resolutions()]
        for start in range(0, len(notices), BATCH):
            await self._send_ordered(notices[start:start + BATCH])

    async def _send_queued(self) -> None:
        while self.queue:
            batch = [self.queue[i] for i in range(min(BATCH, len(self.queue)))]
            await self._send_ordered(batch)
            for _ in batch:
                self.queue.popleft()

    async def _send_ordered(self, notices: Sequence[Notice]) -> None:
        """Firing criticals, the rest, resolved criticals, with a pause between those present when there
        are warnings too: a critical is in place before the warnings it mutes, and leaves after them
        (resolved first, it would unmute a warning still firing for a moment)."""
        firing = [n for n in notices if n.critical and n.ends_ms is None]
        resolved = [n for n in notices if n.critical and n.ends_ms is not None]
        others = [n for n in notices if not n.critical]
        if not others or not (firing or resolved):
            await self._send(notices)
            return
        if firing:
            started = await self._started()
            while True:
                await self._send(firing)
                await asyncio.sleep(INHIBIT_SETTLE_S)
                now_started = await self._started()
                if now_started == started:
                    break
                log.info("Alertmanager restarted (%s -> %s) while criticals were sent: sending them again first",
                         started, now_started)
                started = now_started
        await self._send(others)
        if resolved:
            await asyncio.sleep(INHIBIT_SETTLE_S)
            await self._send(resolved)

    async def _started(self) -> str:
        """When Alertmanager started (its ``uptime``): changes when it restarts."""
        session = self._open()
        try:
            async with asyncio.timeout(self.timeout_s), session.get(self.status_endpoint) as response:
                if response.status >= 300:
                    raise DeliveryError(f"status: HTTP {response.status}")
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise DeliveryError(f"status: {type(exc).__name__}: {exc}") from exc
        return str(body.get("uptime", "")) if isinstance(body, dict) else ""

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
        return self._session

    async def _send(self, notices: Sequence[Notice]) -> None:
        if not notices:
            return
        session = self._open()
        wall = self.wall_ms()
        body = [n.payload(wall, self.ttl_ms, self.generator_url(n)) for n in notices]
        try:
            async with asyncio.timeout(self.timeout_s), session.post(self.endpoint, json=body) as response:
                if response.status >= 300:
                    text = (await response.text())[:300]
                    raise DeliveryError(f"HTTP {response.status}: {text}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        self.stats.batches_sent += 1
        self.stats.alerts_sent += len(body)

    async def aclose(self, timeout_s: float) -> None:
        """One last try to hand over what is queued (bounded), then close the session."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._send_queued()
        except (DeliveryError, TimeoutError) as exc:
            log.error("shutdown: %d alert events not delivered to Alertmanager (%s); firing alerts are re-sent "  # noqa: TRY400
                      "from the state file at the next start", len(self.queue), exc)
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None
