"""Times on the command line: ``--from`` / ``--to`` / ``--start`` of the alert replay and the simulators."""

from __future__ import annotations

import argparse
from datetime import datetime


def time_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time with an offset (``2026-05-28T08:00:00+08:00``). A time
    without an offset is refused rather than guessed: UTC and the district's +08:00 are 8 h apart."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither epoch milliseconds nor ISO 8601") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. Z or +08:00")
    return int(moment.timestamp() * 1000)
