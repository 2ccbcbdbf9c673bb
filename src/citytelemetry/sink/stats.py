"""Counters of the write path, read by /metrics and the self-metrics writer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class WriteStats:
    lines_written: int = 0
    batches_written: int = 0
    write_seconds_total: float = 0.0
    last_batch_size: int = 0
    retries: int = 0
    lines_dead_lettered: int = 0
    buffered_lines: int = 0
    consecutive_failures: int = 0
    last_error: str = ""
    last_success_monotonic: float = 0.0
