"""``citytelemetry reload``: ask the running pipeline to reload profiles, inventory and alert rules.

It posts to ``/-/reload`` on the pipeline's HTTP port (``http.host``/``http.port`` of the same configuration)
and prints what changed, or why nothing did. ``kill -HUP <pid>`` (``systemctl reload citytelemetry``) does
the same and leaves the report in the pipeline's log.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from typing import Any

from citytelemetry.config import Settings

TIMEOUT_S = 120.0  # loading 1,600 devices and the rules takes a few seconds; a slow disk more


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands.add_parser("reload", help="reload profiles, inventory and alert rules of the running pipeline "
                        "(or send it SIGHUP)")


def _url(settings: Settings) -> str:
    host = settings.http.host
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - listening everywhere: reach it on loopback
        host = "127.0.0.1"
    return f"http://{host}:{settings.http.port}/-/reload"


def handle(_args: argparse.Namespace, settings: Settings) -> int:
    if not settings.http.port:
        print("citytelemetry: http.port is 0, so the pipeline has no reload endpoint; send it SIGHUP instead "
              "(kill -HUP <pid>, systemctl reload citytelemetry)")
        return 2
    url = _url(settings)
    request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 - http:// from our own settings
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            report: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code != 422:
            print(f"citytelemetry: {url} answered HTTP {exc.code}")
            return 2
        report = json.load(exc)
    except (urllib.error.URLError, TimeoutError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else "timed out"
        print(f"citytelemetry: no pipeline answers on {url} ({reason}); is it running with this configuration?")
        return 2
    for line in report.get("lines", []):
        print(line)
    return 0 if report.get("applied") else 1
