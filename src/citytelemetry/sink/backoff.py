"""Capped exponential backoff with full jitter; a server's Retry-After wins when it asks for longer."""

from __future__ import annotations

import random


class Backoff:
    __slots__ = ("_rng", "base_s", "cap_s")

    def __init__(self, base_s: float = 0.2, cap_s: float = 15.0, rng: random.Random | None = None) -> None:
        self.base_s, self.cap_s = base_s, cap_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** min(attempt, 20))
        jittered = self._rng.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            return max(jittered, min(retry_after_s, 300.0))
        return jittered
