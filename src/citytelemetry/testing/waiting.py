"""Bounded waits for an observable condition: what tests do instead of fixed sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(condition: Callable[[], object], timeout_s: float = 5.0, what: str = "") -> None:
    """Poll ``condition`` until it is true; ``TimeoutError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_s} s: {what or condition}")
        await asyncio.sleep(0.005)


def wait_until_sync(condition: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """The same for threads and processes (integration tests)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout_s} s: {what}")
        time.sleep(poll_s)
