"""GC pauses are timed per generation and exposed on /metrics."""

from __future__ import annotations

import gc

from prometheus_client import generate_latest

from citytelemetry.observability.gcpauses import (
    FULL_EVERY,
    MIDDLE_EVERY,
    GcPauseMeter,
    GcPauses,
    freeze_startup_objects,
)
from citytelemetry.observability.prometheus import registry_for
from citytelemetry.observability.stats import PipelineStats


def test_each_collection_is_counted_and_timed_by_generation() -> None:
    pauses = GcPauses()
    with GcPauseMeter(pauses) as meter:
        assert meter._callback in gc.callbacks
        gc.collect(2)
        gc.collect(2)
        gc.collect(0)
    assert meter._callback not in gc.callbacks
    assert pauses.collections[2] == 2  # gen-0/1 collections may also happen on their own meanwhile
    assert pauses.collections[0] >= 1
    assert 0 < pauses.longest_s[2] <= pauses.seconds[2]
    gc.collect(2)
    assert pauses.collections[2] == 2  # not counted once removed


def test_pauses_are_on_metrics_only_when_measured() -> None:
    stats = PipelineStats()
    assert b"citytelemetry_gc" not in generate_latest(registry_for(stats))
    stats.gc = GcPauses(collections=[7, 3, 1], seconds=[0.01, 0.02, 0.25], longest_s=[0.001, 0.01, 0.25])
    text = generate_latest(registry_for(stats)).decode()
    assert 'citytelemetry_gc_collections_total{generation="2"} 1.0' in text
    assert 'citytelemetry_gc_pause_seconds_total{generation="2"} 0.25' in text
    assert 'citytelemetry_gc_longest_pause_seconds{generation="0"} 0.001' in text


def test_freezing_start_up_objects_sets_the_young_generation_threshold() -> None:
    before = gc.get_threshold()
    try:
        frozen = freeze_startup_objects(50_000)
        assert frozen == gc.get_freeze_count() > 0
        assert gc.get_threshold() == (50_000, MIDDLE_EVERY, FULL_EVERY)
        freeze_startup_objects()  # without a threshold: the thresholds stay as they are
        assert gc.get_threshold() == (50_000, MIDDLE_EVERY, FULL_EVERY)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
