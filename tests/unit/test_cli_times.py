"""The command line's times (alert replay, simulators)."""

from __future__ import annotations

import argparse

import pytest

from citytelemetry.cli.times import time_ms


def test_epoch_milliseconds_and_iso_times_with_an_offset_are_read() -> None:
    assert time_ms("1780000000000") == 1_780_000_000_000
    assert time_ms("2026-05-28T08:00:00+08:00") == time_ms("2026-05-28T00:00:00Z") == 1_779_926_400_000


@pytest.mark.parametrize(("text", "why"), [("2026-05-28T08:00:00", "needs a UTC offset"),
                                           ("yesterday", "neither epoch milliseconds nor ISO 8601")])
def test_a_time_without_an_offset_or_not_a_time_is_refused_in_words(text: str, why: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=why):
        time_ms(text)
