"""Garbage-collector pauses: how long each collection held the event loop, by generation.

A full (generation 2) collection walks every object the collector tracks; while it runs nothing is
received, written or acknowledged. In process, 100k W1 messages through the pipeline (bench.hotpath)
took 11 full collections of up to 369 ms each, 1.5 s in all. Most of what they walked was never going
to be garbage: modules, classes, the catalog, the compiled rules. ``freeze_startup_objects`` moves that
to the permanent generation (``gc.freeze``), which cut the same run's longest pause to 148 ms; the
``GcPauseMeter`` counts what remains, for /metrics. And it raises the young generation's threshold
(``pipeline.gc_young_objects``): the pipeline's garbage is freed by reference counting, so Python's
default of a collection every 700 allocations mostly walked live objects for nothing.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Self


@dataclass(slots=True)
class GcPauses:
    """Per generation: collections, total seconds and the longest pause since start."""

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    longest_s: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])


class GcPauseMeter:
    """Times every collection through ``gc.callbacks`` (process-wide: install it once per process)."""

    def __init__(self, pauses: GcPauses) -> None:
        self.pauses = pauses
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        pause = time.perf_counter() - self._started
        p = self.pauses
        p.collections[generation] += 1
        p.seconds[generation] += pause
        p.longest_s[generation] = max(p.longest_s[generation], pause)

    def __enter__(self) -> Self:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)


# Older generations: a middle collection every 20 young ones (a million allocations at the default), a full
# one every 100 middle ones at most (CPython also waits until a quarter of the old objects are new).
MIDDLE_EVERY, FULL_EVERY = 20, 100


def freeze_startup_objects(young_objects: int | None = None) -> int:
    """Collect once, then keep everything alive now out of every later collection; returns how many.

    For the process that runs the pipeline, after start-up: frozen objects are still freed by reference
    counting, only cycles among them would stay (and start-up objects live as long as the process).
    ``young_objects``: allocations between two young collections from now on (``pipeline.gc_young_objects``).
    """
    gc.collect()
    gc.freeze()
    if young_objects is not None:
        gc.set_threshold(young_objects, MIDDLE_EVERY, FULL_EVERY)
    return gc.get_freeze_count()
