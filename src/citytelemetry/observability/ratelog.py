"""Rate-limited logging of rejections: a flood of bad messages must not become a flood of log lines."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    __slots__ = ("_counts", "_logger", "_per_window", "_window_s", "_window_start")

    def __init__(self, logger: logging.Logger, per_window: int = 5, window_s: float = 10.0) -> None:
        self._logger, self._per_window, self._window_s = logger, per_window, window_s
        self._window_start = time.monotonic()
        self._counts: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window_start >= self._window_s:
            for name, count in self._counts.items():
                if count > self._per_window:
                    self._logger.warning("%s: %d more suppressed in the last %.0f s", name,
                                         count - self._per_window, self._window_s)
            self._counts.clear()
            self._window_start = now
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        if count <= self._per_window:
            self._logger.warning(message, *args)
