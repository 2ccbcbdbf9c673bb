"""Alert bands from the sensor's physics (``sensor:`` in a profile measurement: resolution, noise).

Clear level of a threshold: ``max(hysteresis x distance to the typical band, 6 x noise + resolution)``
back from the level. A reading is its true value within +-3 noise standard deviations, rounded to the
resolution; a true value that can trip the level (3 sigma beyond it) gives readings up to 6 sigma and a
step away, and none of them clears: noise alone cannot make an alert flap. (O2 low warning 19.5 %vol,
noise 0.1, steps 0.1: clears above 20.2 %vol; a +-0.25 %vol oscillation around 19.5 stays firing.)

Flat line (QARTOD): readings within ``resolution / 2`` of the run's first are the same reported step. A
healthy sensor of noise sigma repeats a given step with probability at most
``p = resolution / (sigma x sqrt(2 pi))`` (the largest density of its noise times the step width), so a
run of N repeats happens by chance with probability p^(N-1): N is chosen so that this is below
``FALSE_RUN``. (O2: p = 0.4, N = 24 readings, 230 s at 10 s.) A sensor much quieter than its resolution
(p near 1) cannot be told from a stuck one quickly: N grows, and the profile should say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from citytelemetry.profiles.models import Sensor, noise_band

FALSE_RUN = 1e-9  # chance that one run of a healthy sensor reaches the flat-line count
MAX_REPEAT_P = 0.99  # a sensor this quiet still counts as able to move


def clear_level(level: float, edge: float, hysteresis: float, sensor: Sensor | None, *, high: bool) -> float:
    """Where an alert on ``level`` clears, ``edge`` being the typical band's side it returns to."""
    band = hysteresis * abs(level - edge)
    if sensor is not None:
        band = max(band, noise_band(sensor))
    return level - band if high else level + band


@dataclass(frozen=True, slots=True)
class FlatLineLimits:
    tolerance: float
    min_count: int
    repeat_p: float  # chance a healthy reading repeats the step (for the docs and `alerts list`)


def repeat_probability(sensor: Sensor) -> float:
    return min(MAX_REPEAT_P, sensor.resolution / (sensor.noise * math.sqrt(2 * math.pi)))


def flat_line_limits(sensor: Sensor) -> FlatLineLimits:
    p = repeat_probability(sensor)
    count = 1 + math.ceil(math.log(FALSE_RUN) / math.log(p))
    return FlatLineLimits(tolerance=sensor.resolution / 2, min_count=max(2, count), repeat_p=p)
