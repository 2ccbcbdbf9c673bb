"""Self-metrics (``ct_pipeline``, ``ct_pipeline_rejects``) and completeness points, written periodically."""

from __future__ import annotations

import asyncio
import time

from citytelemetry.contracts import Sink
from citytelemetry.observability.completeness import CompletenessTracker
from citytelemetry.observability.selfmetrics import selfmetrics_lines
from citytelemetry.observability.stats import PipelineStats
from citytelemetry.validate.sequence import SequenceTracker


class SelfMetricsReporter:
    def __init__(self, stats: PipelineStats, completeness: CompletenessTracker, sequences: SequenceTracker,
                 sink: Sink, *, instance: str, interval_s: float) -> None:
        self._stats = stats
        self._completeness = completeness
        self._sequences = sequences
        self._sink = sink
        self._instance = instance
        self._interval_s = interval_s

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self.report()

    def report(self) -> None:
        now_ns = time.time_ns()
        self._stats.sequence_restarts = self._sequences.restarts
        self._stats.completeness = self._completeness.by_system()
        self._sink.put_nowait(selfmetrics_lines(self._stats, self._instance, now_ns))
        self._sink.put_nowait(self._completeness.lines(now_ns))

    def final(self) -> None:
        """Once more at shutdown: the last counters go out with the final flush."""
        self._sink.put_nowait(selfmetrics_lines(self._stats, self._instance, time.time_ns()))
