from __future__ import annotations

import pytest

from citytelemetry.validate.ratelimit import DeviceRateLimit

from .catalog_fixture import make_catalog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_rate_holds_and_refusals_are_counted() -> None:
    clock = Clock()
    limit = DeviceRateLimit({"a": 2.0}, burst=5, clock=clock)
    assert [limit("a") for _ in range(7)] == [True] * 5 + [False] * 2
    assert limit.refused == 2
    clock.now += 1.0  # two tokens back
    assert [limit("a") for _ in range(3)] == [True, True, False]


def test_tokens_never_exceed_the_burst_after_a_long_silence() -> None:
    clock = Clock()
    limit = DeviceRateLimit({"a": 100.0}, burst=3, clock=clock)
    limit("a")
    clock.now += 3600
    assert [limit("a") for _ in range(4)] == [True, True, True, False]


def test_one_flooding_device_does_not_limit_another() -> None:
    clock = Clock()
    limit = DeviceRateLimit({"noisy": 1.0, "quiet": 1.0}, burst=10, clock=clock)
    flood = [limit("noisy") for _ in range(1000)]
    assert flood.count(True) == 10
    assert limit("quiet")


def test_batch_cost_takes_several_tokens() -> None:
    limit = DeviceRateLimit({"a": 1.0}, burst=10, clock=Clock())
    assert limit("a", cost=8)
    assert not limit("a", cost=8)
    assert limit.tokens("a") == 2


def test_rates_follow_the_profile_reporting_interval_with_headroom() -> None:
    limit = DeviceRateLimit.from_catalog(make_catalog(), headroom=20, min_rate_per_s=1.0)
    assert limit.rates == {"tun-c001-gas1": 2.0}  # 20 x (1 / 10 s)
    slow = DeviceRateLimit.from_catalog(make_catalog(), headroom=2, min_rate_per_s=1.0)
    assert slow.rates == {"tun-c001-gas1": 1.0}  # floor


def test_unknown_devices_get_the_default_rate_and_bad_settings_are_refused() -> None:
    clock = Clock()
    limit = DeviceRateLimit({}, default_rate=1.0, burst=1, clock=clock)
    assert limit("x")
    assert not limit("x")
    with pytest.raises(ValueError, match="positive"):
        DeviceRateLimit({"a": 0.0})
