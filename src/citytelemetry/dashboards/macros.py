"""Grafana's InfluxQL macro and template-variable substitution, for running panel queries outside Grafana.

The preview and the query tests use this to produce exactly the text Grafana's InfluxDB data source
would send:

- ``$timeFilter``: ``time >= now() - 6h`` for a range relative to now, ``time >= Xms and time <= Yms``
  for an absolute one;
- ``$__interval`` / ``$interval``: the group-by interval (``10s``); ``$__range_s``, ``$__range_ms``, ``$__range``;
  ``$__from`` / ``$__to``: the range's ends in epoch ms (the storage-tier variable compares their difference);
- query variables used as ``/^$var$/``: All gives the variable's ``allValue`` (``.*``) verbatim; chosen
  values are regex-escaped, several joined as ``(a|b)`` (Grafana's ``interpolateQueryExpr``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from citytelemetry.dashboards.model import ALL_VALUE

# Grafana's variable syntax: $name, [[name]] and ${name} (with an optional :format we do not use).
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::\w+)?\]\]|\$\{(\w+)(?::[^}]+)?\}")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|{}\[\]/]")
_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds of ``30s``, ``5m``, ``6h``, ``250ms``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text.strip())
    if match is None:
        raise ValueError(f"not a duration like 30s, 5m or 6h: {text!r}")
    return float(match.group(1)) * _UNITS_S[match.group(2)]


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Either ``last`` (relative to now: ``6h``) or ``start_ms``/``end_ms`` (absolute, epoch ms)."""

    last: str | None = "6h"
    start_ms: int | None = None
    end_ms: int | None = None

    @property
    def seconds(self) -> float:
        if self.last is not None:
            return parse_duration(self.last)
        if self.start_ms is None or self.end_ms is None:
            raise ValueError("an absolute range needs start_ms and end_ms")
        return (self.end_ms - self.start_ms) / 1000

    @property
    def filter(self) -> str:
        if self.last is not None:
            return f"time >= now() - {self.last}"
        return f"time >= {self.start_ms}ms and time <= {self.end_ms}ms"


def escape_regex(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def format_values(values: Sequence[str] | None) -> str:
    """``None`` means All."""
    if values is None:
        return ALL_VALUE
    escaped = [escape_regex(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def auto_interval(time_range: TimeRange, max_points: int = 200, minimum_s: int = 10) -> str:
    """Roughly Grafana's $__interval: range ÷ data points, at least the data source's minimum."""
    seconds = max(minimum_s, int(time_range.seconds / max_points))
    return f"{seconds}s"


def interpolate(query: str, *, variables: Mapping[str, Sequence[str] | None], time_range: TimeRange,
                interval: str) -> str:
    end_ms = time_range.end_ms if time_range.last is None and time_range.end_ms is not None else \
        time.time_ns() // 1_000_000
    builtins = {
        "__from": str(end_ms - int(time_range.seconds * 1000)), "__to": str(end_ms),
        "timeFilter": time_range.filter, "__interval": interval, "interval": interval,
        "__range_s": str(int(time_range.seconds)), "__range_ms": str(int(time_range.seconds * 1000)),
        "__range": f"{int(time_range.seconds)}s",
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return format_values(variables[name])
        return match.group(0)

    return _VARIABLE.sub(replace, query)
