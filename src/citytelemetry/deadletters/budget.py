"""How many dead letters a device can make the pipeline write: a token bucket per device.

Each refused message that is admitted costs one token of its device's bucket (``burst`` at once, then
``rate_per_s`` on average, in pipeline time); one that is not is *suppressed*: counted by reason on
/metrics, and its count rides on the device's next admitted ``ct_rejects`` point (field
``suppressed``), so InfluxDB learns of it too. Nothing is stored whole for it and no notice goes out:
that is the bound. Devices outside the inventory share one bucket (``UNKNOWN``), so memory stays
bounded by the inventory whatever topics are made up.

    budget = DeadLetterBudget(rate_per_s=1.0, burst=10)
    if budget.admit(device_id):                 # device_id None: not in the inventory
        suppressed = budget.take_suppressed(device_id)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from citytelemetry.validate.ratelimit import DeviceRateLimit

UNKNOWN = ""  # the one bucket of every device outside the inventory
DEFAULT_RATE_PER_S = 1.0
DEFAULT_BURST = 10.0


class DeadLetterBudget:
    __slots__ = ("_buckets", "_suppressed", "suppressed_total")

    def __init__(self, *, rate_per_s: float = DEFAULT_RATE_PER_S, burst: float = DEFAULT_BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets = DeviceRateLimit({}, default_rate=rate_per_s, burst=burst, clock=clock)
        self._suppressed: dict[str, int] = {}  # device -> suppressed since its last admitted dead letter
        self.suppressed_total = 0

    def admit(self, device_id: str | None) -> bool:
        key = device_id or UNKNOWN
        if self._buckets(key):
            return True
        self._suppressed[key] = self._suppressed.get(key, 0) + 1
        self.suppressed_total += 1
        return False

    def take_suppressed(self, device_id: str | None) -> int:
        """Dead letters of this device suppressed since the last call (then 0)."""
        return self._suppressed.pop(device_id or UNKNOWN, 0)
