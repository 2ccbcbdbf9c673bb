"""Health in two questions, as an orchestrator asks them: is the process alive, and is it ready?

*Ready* means MQTT messages are being acknowledged. Not ready: the broker is disconnected, the spool
is full or its disk is failing, or (without a spool) InfluxDB is failing, since acknowledgements then
wait for it. InfluxDB failing while a spool absorbs everything is ready, with ``influxdb_failing`` as a
degraded reason: restarting or unrouting a process that buffers through an outage helps nobody.

*Alive* fails only when the process is stuck: a stage has work waiting and has made no progress for
``STALL_S`` seconds although nothing outside the process explains it (each not-ready reason explains
the stages it holds back). A blocked event loop cannot answer at all: the probe's timeout is its verdict.

Answers carry reason codes only, never an error's text (it may hold hostnames, paths or a server's
words); the log has the details.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from citytelemetry.observability.stats import PipelineStats

STALL_S = 60.0  # longer than a write's timeout and its first retries (influx.timeout_s is 10 s by default)


class Condition(enum.StrEnum):
    BROKER_DISCONNECTED = "broker_disconnected"
    SPOOL_FULL = "spool_full"
    SPOOL_WRITE_FAILING = "spool_write_failing"
    INFLUXDB_FAILING = "influxdb_failing"
    ACKNOWLEDGING_STALLED = "acknowledging_stalled"  # messages in flight, none settled
    WRITING_STALLED = "writing_stalled"  # lines buffered, none written, no write failing
    DRAINING_STALLED = "draining_stalled"  # spooled records waiting, none moved to InfluxDB


STALLS = (Condition.ACKNOWLEDGING_STALLED, Condition.WRITING_STALLED, Condition.DRAINING_STALLED)


@dataclass(slots=True, frozen=True)
class Health:
    live: bool
    ready: bool
    not_ready: tuple[Condition, ...]  # why messages are not being acknowledged
    degraded: tuple[Condition, ...]  # what is wrong while acknowledgements go on
    stalled: tuple[Condition, ...]  # why the process counts as stuck

    @property
    def conditions(self) -> frozenset[Condition]:
        return frozenset((*self.not_ready, *self.degraded, *self.stalled))

    def body(self) -> dict[str, object]:
        status = "stuck" if not self.live else "not_ready" if not self.ready else (
            "degraded" if self.degraded else "ok")
        return {"status": status, "live": self.live, "ready": self.ready, "not_ready": list(self.not_ready),
                "degraded": list(self.degraded), "stalled": list(self.stalled)}


@dataclass(slots=True)
class _Stage:
    progress: int = -1
    since: float = 0.0

    def stalled_for(self, now: float, progress: int, *, waiting: bool) -> float:
        if not waiting or progress != self.progress:
            self.progress, self.since = progress, now
        return now - self.since


@dataclass(slots=True)
class HealthCheck:
    """Samples the counters (``observe``, once a second and at every probe) and answers both questions."""

    stats: PipelineStats
    stall_s: float = STALL_S
    clock: Callable[[], float] = time.monotonic
    _stages: dict[Condition, _Stage] = field(default_factory=lambda: {c: _Stage() for c in STALLS})

    def observe(self) -> Health:
        s, now = self.stats, self.clock()
        spool = s.spool
        spool_failing = spool is not None and bool(spool.last_error)
        influx_failing = s.write.consecutive_failures > 0
        not_ready = [c for c, holds in (
            (Condition.BROKER_DISCONNECTED, not s.mqtt_connected),
            (Condition.SPOOL_FULL, s.spool_full is not None and s.spool_full()),
            (Condition.SPOOL_WRITE_FAILING, spool_failing),
            (Condition.INFLUXDB_FAILING, influx_failing and spool is None),
        ) if holds]
        degraded = [Condition.INFLUXDB_FAILING] if influx_failing and spool is not None else []
        w = s.write
        samples = (
            (Condition.ACKNOWLEDGING_STALLED, s.messages_settled, s.in_flight_messages > 0, bool(not_ready)),
            (Condition.WRITING_STALLED, w.lines_written + w.lines_dead_lettered + w.retries, w.buffered_lines > 0,
             influx_failing),
            (Condition.DRAINING_STALLED, spool.records_drained if spool else 0, bool(spool and spool.depth_records),
             influx_failing),
        )
        stalled = []
        for condition, progress, waiting, explained in samples:
            # While a cause outside the process holds a stage back, its clock does not run.
            idle_s = self._stages[condition].stalled_for(now, progress, waiting=waiting and not explained)
            if idle_s >= self.stall_s:
                stalled.append(condition)
        return Health(live=not stalled, ready=not not_ready and not stalled, not_ready=tuple(not_ready),
                      degraded=tuple(degraded), stalled=tuple(stalled))
