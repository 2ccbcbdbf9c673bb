"""Per-device token buckets: one flooding device cannot crowd out the others.

A device may send ``burst`` messages at once, then ``rate_per_s`` on average. The rate of a device
type follows from its profile: ``headroom`` times its reporting rate (a device that reports every 10 s
gets 0.1/s x headroom), never below ``min_rate_per_s``, so a catch-up after an outage (a batch per
message) still passes while a runaway loop is cut. Buckets exist only for devices of the inventory
(the caller checks identity first), so memory is bounded by the inventory.

    limit = DeviceRateLimit.from_catalog(catalog)
    if not limit(device_id, now_s):      # or allows() now, take() once the reading is accepted
        reject(Reason.RATE_LIMITED)

Refusals cost tokens too (``charge``, by the handler, one per refusal): a device that floods junk runs
out of budget for its readings as well, and a message refused before its readings were counted
(``not_json``, ``bad_schema``...) is not free. The debt is bounded (``-burst``), so a device earns its way back in at
most ``2 * burst / rate`` seconds of device time once it behaves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from citytelemetry.profiles import Catalog

DEFAULT_HEADROOM = 20.0
DEFAULT_MIN_RATE_PER_S = 1.0
DEFAULT_BURST = 200.0


class DeviceRateLimit:
    """``limit(device_id)`` -> True if the message may pass (and takes a token), False if over the rate."""

    __slots__ = ("_buckets", "_clock", "burst", "default_rate", "rates", "refused")

    def __init__(self, rates: Mapping[str, float], *, default_rate: float = DEFAULT_MIN_RATE_PER_S,
                 burst: float = DEFAULT_BURST, clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or default_rate <= 0 or any(r <= 0 for r in rates.values()):
            raise ValueError("rates must be positive and burst at least 1")
        self.rates = dict(rates)
        self.default_rate = default_rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}  # device -> [tokens, last refill time]
        self.refused = 0

    @classmethod
    def from_catalog(cls, catalog: Catalog, *, headroom: float = DEFAULT_HEADROOM,
                     min_rate_per_s: float = DEFAULT_MIN_RATE_PER_S, burst: float = DEFAULT_BURST,
                     clock: Callable[[], float] = time.monotonic) -> DeviceRateLimit:
        rates = {device.id: max(min_rate_per_s, headroom / device.profile.reporting_interval_s)
                 for device in catalog.devices.values()}
        return cls(rates, default_rate=min_rate_per_s, burst=burst, clock=clock)

    def __call__(self, device_id: str, cost: float = 1.0, *, now: float | None = None) -> bool:
        """``now`` may be the device's own timestamp (seconds): the validator limits readings in device
        time, so a backlog replayed fast after an outage passes while a flood is cut."""
        if now is None:
            now = self._clock()
        if self.allows(device_id, now, cost):
            self.take(device_id, now, cost)
            return True
        return False

    def allows(self, device_id: str, now: float, cost: float = 1.0) -> bool:
        """Would a message at ``now`` pass? Changes nothing (counts a refusal)."""
        bucket = self._buckets.get(device_id)
        if bucket is None or self._refilled(device_id, bucket, now) >= cost:
            return True
        self.refused += 1
        return False

    def charge(self, device_id: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens for refused work, down to ``-burst`` (no refill: that needs device time)."""
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = self._buckets[device_id] = [self.burst, math.nan]
        bucket[0] = max(-self.burst, bucket[0] - cost)

    def take(self, device_id: str, now: float, cost: float = 1.0) -> None:
        """Charge a message that passed ``allows`` and was accepted. Only accepted readings move the
        bucket: a refused one with a far-ahead timestamp must not advance its clock (issue 13)."""
        bucket = self._buckets.get(device_id)
        if bucket is None:
            self._buckets[device_id] = [self.burst - cost, now]
            return
        bucket[0] = self._refilled(device_id, bucket, now) - cost
        bucket[1] = now if bucket[1] != bucket[1] else max(bucket[1], now)  # NaN: the first device time

    def _refilled(self, device_id: str, bucket: list[float], now: float) -> float:
        if bucket[1] != bucket[1]:  # NaN: charged before its first reading, no device time to refill from
            return bucket[0]
        rate = self.rates.get(device_id, self.default_rate)
        return min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * rate)

    def buckets(self) -> dict[str, list[float]]:
        """The live buckets, device -> [tokens, last refill time] (for the checkpoint)."""
        return self._buckets

    def tokens(self, device_id: str) -> float:
        bucket = self._buckets.get(device_id)
        return self.burst if bucket is None else bucket[0]
