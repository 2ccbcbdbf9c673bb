"""The alert pages the pipeline serves, where every alert's ``generatorURL`` points:

    /alerts                              what fires now and what resolved lately
    /alerts/<alertname>                  the rule: condition, clear level, for, source, runbook
    /alerts/<alertname>/<fingerprint>    one alert: its rule, its recent values, its runbook and history
    /docs/<file>.md                      docs/ as HTML with heading anchors (runbook links, unless
                                         ``alerts.docs_url`` points elsewhere)

Plain HTML from the engine's memory (open alerts, the last resolutions): no I/O but reading docs/.
Registered on the pipeline's HTTP server by ``add_routes`` (observability/http.py).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from citytelemetry.alerts.model import Alert, RuleInfo
from citytelemetry.measurements import ALERTS as MEASUREMENT

if TYPE_CHECKING:
    from citytelemetry.alerts.evaluator import AlertEngine

STYLE = ("body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}h1{font-size:1.4em}"
         ".firing{color:#b00}.resolved{color:#070}pre{white-space:pre-wrap}")
DOC_NAME = re.compile(r"^[a-z0-9_-]+\.md$")


def _e(value: object) -> str:
    return html.escape(str(value))


def _when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _page(title: str, body: str) -> web.Response:
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{STYLE}</style>"
            f"</head><body><p><a href='/alerts'>alerts</a></p><h1>{_e(title)}</h1>{body}</body></html>")
    return web.Response(text=text, content_type="text/html")


def _table(rows: Sequence[tuple[str, ...]], head: tuple[str, ...]) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr>{cells}</table>"


class AlertPages:
    __slots__ = ("dashboards_url", "docs_dir", "engine")

    def __init__(self, engine: AlertEngine, docs_dir: Path, dashboards_url: str | None = None) -> None:
        self.engine, self.docs_dir, self.dashboards_url = engine, docs_dir, dashboards_url

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/alerts", self.index)
        app.router.add_get("/alerts/{alertname}", self.rule)
        app.router.add_get("/alerts/{alertname}/{fingerprint}", self.alert)
        app.router.add_get("/docs/{name}", self.doc)

    def _alerts(self) -> list[Alert]:
        return [*self.engine.tracker.firing(), *reversed(self.engine.resolved.values())]

    def _link(self, alert: Alert) -> str:
        return f"<a href='/alerts/{_e(alert.rule.name)}/{alert.fingerprint}'>{_e(alert.summary)}</a>"

    async def index(self, _: web.Request) -> web.Response:
        rows = [(f"<span class='{a.state.value}'>{a.state.value}</span>", _e(a.rule.severity.value),
                 _e(_when(a.fired_ms)), self._link(a)) for a in self._alerts()]
        return _page("citytelemetry alerts", _table(rows, ("state", "severity", "since", "alert")))

    def _rule_block(self, info: RuleInfo) -> str:
        runbook = _e(info.runbook)
        rows = [("severity", _e(info.severity.value)), ("kind", _e(info.kind)), ("watches", _e(info.scope)),
                ("condition", _e(info.condition)), ("for", f"{info.for_ms / 1000:g} s"),
                ("clear level", "" if info.clear is None else _e(f"{info.clear:.4g} {info.unit}")),
                ("source", _e(info.source)), ("runbook", f"<a href='{runbook}'>{runbook}</a>")]
        return _table(rows, ("rule", _e(info.name)))

    async def rule(self, request: web.Request) -> web.Response:
        name = request.match_info["alertname"]
        infos = [i for i in self.engine.ruleset.infos if i.name == name]
        if not infos:
            raise web.HTTPNotFound(text=f"no alert rule {name}")
        alerts = [a for a in self._alerts() if a.rule.name == name]
        body = "".join(self._rule_block(i) for i in infos)
        body += "<h2>alerts</h2>" + _table([(_e(a.state.value), self._link(a)) for a in alerts], ("state", "alert"))
        return _page(f"rule {name}", body)

    async def alert(self, request: web.Request) -> web.Response:
        name, fingerprint = request.match_info["alertname"], request.match_info["fingerprint"]
        alert = next((a for a in self._alerts() if a.fingerprint == fingerprint and a.rule.name == name), None)
        if alert is None:  # resolved long ago or before a restart: the rule still says what it means
            return await self.rule(request)
        recent = [(_e(_when(ts)), _e(f"{value:.6g} {alert.rule.unit}")) for ts, value in reversed(alert.recent)]
        labels = [(_e(k), _e(v)) for k, v in alert.labels]
        # Shown, never run; the fingerprint is 16 hex digits of our own making.
        query = f"SELECT * FROM {MEASUREMENT} WHERE fingerprint = '{alert.fingerprint}' AND time > now() - 7d"  # noqa: S608
        body = (f"<p class='{alert.state.value}'>{_e(alert.state.value)}: {_e(alert.summary)}</p>"
                f"<p>condition since {_e(_when(alert.since_ms))}, firing since {_e(_when(alert.fired_ms))}"
                f"{', resolved ' + _e(_when(alert.resolved_ms)) if alert.resolved_ms else ''}</p>"
                + self._rule_block(alert.rule)
                + "<h2>recent values</h2>" + _table(recent, ("event time", "value"))
                + "<h2>labels</h2>" + _table(labels, ("label", "value"))
                + f"<h2>history</h2><p>InfluxDB (<code>{MEASUREMENT}</code>), the dashboards' Firing alerts panel"
                f"{self._dashboard(alert)}, or:</p><pre>{_e(query)}</pre>")
        return _page(f"{alert.rule.name} ({alert.rule.severity.value})", body)

    def _dashboard(self, alert: Alert) -> str:
        system = dict(alert.labels).get("system", "")
        if not self.dashboards_url or not system:
            return ""
        url = _e(f"{self.dashboards_url}/d/ct-{system}")
        return f" (<a href='{url}'>the {_e(system)} dashboard</a>)"

    async def doc(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        path = self.docs_dir / name
        if not DOC_NAME.match(name) or not path.is_file():
            raise web.HTTPNotFound(text=f"no document {name}")
        return _page(name, markdown_html(path.read_text(encoding="utf-8")))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def markdown_html(text: str) -> str:
    """Headings with their anchors (what runbook links need); everything else as preformatted text."""
    out: list[str] = []
    block: list[str] = []
    for line in text.splitlines():
        heading = re.match(r"^(#{1,6}) (.+)$", line)
        if heading is None:
            block.append(line)
            continue
        if any(b.strip() for b in block):
            out.append(f"<pre>{_e(chr(10).join(block).strip())}</pre>")
        block = []
        level, title = len(heading.group(1)), heading.group(2)
        out.append(f"<h{level} id='{_e(anchor(title))}'>{_e(title)}</h{level}>")
    if any(b.strip() for b in block):
        out.append(f"<pre>{_e(chr(10).join(block).strip())}</pre>")
    return "".join(out)
