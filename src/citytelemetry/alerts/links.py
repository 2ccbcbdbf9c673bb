"""Where people follow an alert to: its page on the pipeline (``generatorURL``) and its runbook.

Both are absolute, or a pager or chat cannot open them: the base is ``alerts.public_url``, else the
pipeline's own HTTP address (``http.host``/``http.port``; a wildcard host is replaced by this machine's
name). With the HTTP server off (``http.port = 0``) and no public URL, alerts carry no generatorURL.
"""

from __future__ import annotations

import socket
from urllib.parse import quote

from citytelemetry.config import Settings

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - recognised, not bound


def public_url(settings: Settings) -> str | None:
    if settings.alerts.public_url:
        return settings.alerts.public_url
    if settings.http.port == 0:
        return None
    host = settings.http.host
    if host in WILDCARD_HOSTS:
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http.port}"


class Links:
    __slots__ = ("base", "runbooks")

    def __init__(self, settings: Settings) -> None:
        self.base = public_url(settings)
        docs = settings.alerts.docs_url or (f"{self.base}/docs" if self.base else "docs")
        self.runbooks = f"{docs}/runbooks.md"

    def alert(self, alertname: str, fingerprint: str) -> str:
        """The alert's page: its rule, recent values and runbook; "" when nothing serves it."""
        if self.base is None:
            return ""
        return f"{self.base}/alerts/{quote(alertname, safe='')}/{fingerprint}"
