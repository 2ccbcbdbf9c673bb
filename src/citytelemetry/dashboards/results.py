"""Run a panel's queries against InfluxDB's InfluxQL endpoint (``/query``) and name the series as Grafana does.

Works with InfluxDB 1.x and with 2.x/3.x through their v1-compatible query API (database mapped by DBRP,
token in the Authorization header).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from citytelemetry.dashboards.macros import TimeRange, interpolate


class QueryError(Exception):
    """InfluxDB refused a query or could not be reached; the message holds the query."""


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    columns: list[str]
    values: list[list[Any]]
    tags: dict[str, str] = field(default_factory=dict)

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.values]

    def display_name(self, alias: str, column: str) -> str:
        """Grafana's InfluxQL naming: the alias with $col, $m and $tag_x filled in, else measurement.column."""
        if not alias:
            tags = ", ".join(f"{k}: {v}" for k, v in sorted(self.tags.items()))
            return f"{self.name}.{column}" + (f" {{{tags}}}" if tags else "")
        out = alias.replace("$col", column).replace("$measurement", self.name).replace("$m", self.name)
        for key, value in self.tags.items():
            out = out.replace(f"$tag_{key}", value)
        return out


@dataclass(frozen=True, slots=True)
class InfluxQuery:
    url: str
    database: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    timeout_s: float = 10.0

    def run(self, query: str) -> list[Series]:
        params = {"db": self.database, "q": query, "epoch": "ms"}
        if self.username:
            params.update(u=self.username, p=self.password or "")
        if not self.url.startswith(("http://", "https://")):
            raise QueryError(f"{self.url}: not an http(s) URL")
        request = urllib.request.Request(f"{self.url.rstrip('/')}/query",  # noqa: S310 - scheme checked above
                                         data=urllib.parse.urlencode(params).encode(), method="POST")
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - scheme checked above
                results = json.load(response)["results"]
        except (OSError, ValueError, KeyError) as exc:
            raise QueryError(f"{query}: {exc}") from exc
        first = results[0]
        if "error" in first:
            raise QueryError(f"{query}: {first['error']}")
        return [Series(s["name"], s["columns"], s["values"], s.get("tags") or {}) for s in first.get("series", [])]


def run_panel(client: InfluxQuery, panel: Mapping[str, Any], *, variables: Mapping[str, Sequence[str] | None],
              time_range: TimeRange, interval: str) -> list[tuple[dict[str, Any], list[Series]]]:
    """Every target of ``panel`` with its series, queries interpolated as Grafana would."""
    out = []
    for target in panel.get("targets", []):
        text = interpolate(target["query"], variables=variables, time_range=time_range, interval=interval)
        out.append((target, client.run(text)))
    return out


def last_values(results: Sequence[tuple[Mapping[str, Any], Sequence[Series]]]) -> dict[str, float | None]:
    """Display name -> last non-null numeric value, for every value column of every series."""
    values: dict[str, float | None] = {}
    for target, series_list in results:
        for series in series_list:
            for column in series.columns[1:]:
                numbers = [v for v in series.column(column) if isinstance(v, (int, float)) and not isinstance(v, bool)]
                values[series.display_name(target.get("alias", ""), column)] = numbers[-1] if numbers else None
    return values
