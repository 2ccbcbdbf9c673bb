"""InfluxQL durations (``90d``, ``1m``, ``INF``) as seconds, for windows, retention and range thresholds."""

from __future__ import annotations

import math
import re

_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"([1-9][0-9]*)([smhdw])")
INFINITE = "INF"


def seconds(text: str) -> float:
    """``1m`` -> 60.0; ``INF`` -> infinity (a retention policy that keeps everything)."""
    if text == INFINITE:
        return math.inf
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration like 1m, 90d or INF: {text!r}")
    return float(int(match.group(1)) * _UNIT_S[match.group(2)])


def window_ms(text: str) -> int:
    return int(seconds(text) * 1000)
