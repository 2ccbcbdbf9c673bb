"""Message generation: every device of the inventory reporting at its profile's cadence.

    DistrictSimulator(catalog, ...).messages()  ->  SimMessage(topic, payload, ...) in simulated-time order

The stream is a pure function of the catalog, the seed and the start time: pacing (real time,
accelerated, fixed message rate) only decides *when* each message leaves (``publishing.py``), never
what it contains. Nothing here touches the network.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from citytelemetry.profiles.catalog import Catalog, RegisteredDevice
from citytelemetry.profiles.models import System
from citytelemetry.records import Reason
from citytelemetry.topics import PREFIX, status_topic, telemetry_topic
from simulators.faults import (
    EXTRA,
    MAX_PAYLOAD_BYTES,
    FaultPlanner,
    FaultRecord,
    Level,
    PlannedFault,
    break_field,
    break_message,
    break_reading,
    check_counts,
    count_by_reason,
    encode,
)
from simulators.scenarios import Scenario, ScenarioModel
from simulators.values import DeviceModel

MAX_BATCH = 500  # the pipeline's default max_readings_per_message
OFFLINE = b'{"state":"offline"}'


@dataclass(frozen=True, slots=True)
class Pacing:
    """When messages leave: ``rate`` msgs/s if set, else ``speed`` x real time (0 = as fast as acked)."""

    speed: float = 1.0
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.speed < 0 or (self.rate is not None and self.rate <= 0):
            raise ValueError("speed must be >= 0 and rate > 0")

    @property
    def mode(self) -> str:
        if self.rate is not None:
            return "rate"
        return {0.0: "unpaced", 1.0: "real"}.get(self.speed, "accelerated")


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One MQTT message to publish, with what the pipeline should make of it."""

    topic: str
    payload: bytes
    sim_ms: int  # simulated time at which it is sent
    device_id: str  # the device of the topic
    device_type: str
    system: str
    readings: int  # readings carried, good or bad
    valid: int  # readings that pass message- and reading-level checks
    points: int  # valid readings with at least one good field: each becomes one InfluxDB point
    faults: tuple[FaultRecord, ...] = ()
    point_ts: tuple[int, int] | None = None  # first and last timestamp of its points
    retain: bool = False


@dataclass(slots=True)
class SystemCounts:
    messages: int = 0
    readings: int = 0  # valid readings
    points: int = 0


@dataclass(slots=True)
class Summary:
    """What a run sent and what the pipeline should have made of it."""

    seed: int
    start_ms: int
    topic_prefix: str
    mode: str
    devices: int
    messages_sent: int = 0  # telemetry messages, good and bad (status messages not included)
    status_messages: int = 0
    readings_sent: int = 0  # valid readings: not refused at message or reading level
    readings_total: int = 0  # every reading carried, including refused ones and duplicates
    expected_points: int = 0  # valid readings with at least one good field
    bytes_sent: int = 0
    first_ts_ms: int | None = None  # time span of the expected points, to bound queries
    last_ts_ms: int | None = None
    per_system: dict[str, SystemCounts] = field(default_factory=dict)
    points_by_type: dict[str, int] = field(default_factory=dict)
    points_by_device: dict[str, int] = field(default_factory=dict)
    faults: list[FaultRecord] = field(default_factory=list)
    wall_s: float = 0.0
    interrupted: bool = False

    @property
    def fault_counts(self) -> dict[str, int]:
        return count_by_reason(self.faults)

    def add(self, message: SimMessage) -> None:
        self.messages_sent += 1
        self.bytes_sent += len(message.payload)
        self.readings_total += message.readings
        self.readings_sent += message.valid
        self.expected_points += message.points
        counts = self.per_system.setdefault(message.system, SystemCounts())
        counts.messages += 1
        counts.readings += message.valid
        counts.points += message.points
        if message.points:
            self.points_by_type[message.device_type] = self.points_by_type.get(message.device_type, 0) + message.points
            self.points_by_device[message.device_id] = (
                self.points_by_device.get(message.device_id, 0) + message.points)
        if message.point_ts is not None:
            first, last = message.point_ts
            self.first_ts_ms = first if self.first_ts_ms is None else min(self.first_ts_ms, first)
            self.last_ts_ms = last if self.last_ts_ms is None else max(self.last_ts_ms, last)
        self.faults.extend(message.faults)

    def to_dict(self, *, per_device: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: getattr(self, name) for name in (
                "seed", "start_ms", "topic_prefix", "mode", "devices", "messages_sent", "status_messages",
                "readings_sent", "readings_total", "expected_points", "bytes_sent", "first_ts_ms",
                "last_ts_ms", "wall_s", "interrupted")
        }
        out["per_system"] = {k: {"messages": v.messages, "readings": v.readings, "points": v.points}
                             for k, v in sorted(self.per_system.items())}
        out["points_by_type"] = dict(sorted(self.points_by_type.items()))
        if per_device:
            out["points_by_device"] = dict(sorted(self.points_by_device.items()))
        out["fault_counts"] = self.fault_counts
        out["faults"] = [f.to_dict() for f in self.faults]
        return out


def select_devices(catalog: Catalog, systems: Iterable[str] | None = None,
                   max_devices: int | None = None) -> list[RegisteredDevice]:
    """Devices of the chosen systems; ``max_devices`` takes them round-robin by type, so a small run
    still covers every device type."""
    wanted = {System(s) for s in systems} if systems is not None else set(System)
    by_type: dict[str, list[RegisteredDevice]] = defaultdict(list)
    for device in sorted(catalog.devices.values(), key=lambda d: d.id):
        if device.system in wanted:
            by_type[device.profile.type].append(device)
    queues = [by_type[t] for t in sorted(by_type)]
    chosen: list[RegisteredDevice] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        chosen.extend(q[rank] for q in queues if rank < len(q))
    return chosen[:max_devices] if max_devices is not None else chosen


def _schedule(intervals: Sequence[int], phases: Sequence[int], *, duration_ms: int | None,
              max_messages: int | None, batch: int) -> Iterator[tuple[int, int, int, int]]:
    """``(offset_ms, device index, first reading k, n readings)`` per message, in simulated-time order.

    Reading k of device i is taken at ``phases[i] + k * intervals[i]``; a message leaves with its last
    reading. Ties go to the lower device index, so the order is total and reproducible.
    """
    def count(i: int) -> int | None:
        if duration_ms is None:
            return None
        return max(0, -(-(duration_ms - phases[i]) // intervals[i]))

    counts = [count(i) for i in range(len(intervals))]

    def chunk(i: int, first: int) -> tuple[int, int, int, int] | None:
        left = counts[i]
        n = batch if left is None else min(batch, left - first)
        return (phases[i] + (first + n - 1) * intervals[i], i, first, n) if n > 0 else None

    heap = [c for i in range(len(intervals)) if (c := chunk(i, 0)) is not None]
    heapq.heapify(heap)
    sent = 0
    while heap and (max_messages is None or sent < max_messages):
        event = heapq.heappop(heap)
        yield event
        sent += 1
        if (following := chunk(event[1], event[2] + event[3])) is not None:
            heapq.heappush(heap, following)


class DistrictSimulator:
    """Deterministic telemetry of a district: construct (validates, plans faults, no I/O), then iterate
    ``messages()`` -- as often as you like, it yields the same bytes each time."""

    def __init__(self, catalog: Catalog, *,  # noqa: PLR0913 - keyword-only run options, read like a config
                 seed: int = 1, start_ms: int | None = None,
                 topic_prefix: str = PREFIX, duration_s: float | None = 60.0, max_messages: int | None = None,
                 batch: int = 1, pacing: Pacing | None = None, faults: Mapping[str, int] | None = None,
                 systems: Iterable[str] | None = None, max_devices: int | None = None,
                 max_payload_bytes: int = MAX_PAYLOAD_BYTES, scenario: Scenario | None = None) -> None:
        if duration_s is None and max_messages is None:
            raise ValueError("give a duration or a number of messages: a run must end")
        if (duration_s is not None and duration_s <= 0) or (max_messages is not None and max_messages < 1):
            raise ValueError("duration and number of messages must be positive")
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be between 1 and {MAX_BATCH}")
        self.seed, self.topic_prefix, self.batch = seed, topic_prefix, batch
        self.pacing = pacing or Pacing()
        self.max_payload_bytes = max_payload_bytes
        self.scenario = scenario  # an incident on top of normal operation (simulators/scenarios.py)
        self.devices = select_devices(catalog, systems, max_devices)
        if not self.devices:
            raise ValueError("no device matches the chosen systems")
        self._intervals = [max(1, round(d.profile.reporting_interval_s * 1000)) for d in self.devices]
        # Each device starts within its first second: every device reports at once, yet not in lockstep.
        self._phases = [random.Random(f"{seed}:phase:{d.id}").randrange(min(1000, iv))
                        for d, iv in zip(self.devices, self._intervals, strict=True)]
        self._duration_ms = None if duration_s is None else round(duration_s * 1000)
        self._max_messages = max_messages
        self.slots = [0] * len(self.devices)
        last_offset = 0
        for offset, i, _, n in self._events():
            self.slots[i] += n
            last_offset = offset
        self.start_ms = start_ms if start_ms is not None else self._default_start(last_offset)
        self.end_ms = self.start_ms + last_offset
        self.plan: dict[tuple[int, int], PlannedFault] = FaultPlanner(
            self.devices, self.slots, batch=batch, seed=seed).place(check_counts(faults or {}))

    def _events(self) -> Iterator[tuple[int, int, int, int]]:
        return _schedule(self._intervals, self._phases, duration_ms=self._duration_ms,
                         max_messages=self._max_messages, batch=self.batch)

    def _default_start(self, span_ms: int) -> int:
        now = int(time.time()) * 1000
        # Faster than real time, simulated time would run ahead of the clock and readings would be
        # refused as timestamp_in_future: end the simulated window at "now" instead.
        return now if self.pacing.mode == "real" else now - span_ms

    @property
    def planned_messages(self) -> int:
        """Scheduled messages, before faults add their own (duplicates, unknown devices, split batches)."""
        return sum(1 for _ in self._events())

    def birth_messages(self) -> list[SimMessage]:
        body = encode({"state": "online", "ts": self.start_ms})
        return [self._status(d, body) for d in self.devices]

    def offline_messages(self) -> list[SimMessage]:
        return [self._status(d, OFFLINE) for d in self.devices]

    def _status(self, device: RegisteredDevice, payload: bytes) -> SimMessage:
        topic = status_topic(device.site, device.system.value, device.id, self.topic_prefix)
        return SimMessage(topic, payload, self.start_ms, device.id, device.profile.type, device.system.value,
                          0, 0, 0, retain=True)

    def messages(self) -> Iterator[SimMessage]:
        models: Sequence[DeviceModel | ScenarioModel] = [DeviceModel(d.profile, self.seed, d.id) for d in self.devices]
        if self.scenario is not None:
            models = self.scenario.wrap(self.devices, models, self.start_ms)  # type: ignore[arg-type]
        stream = (message for offset, i, first, n in self._events()
                  for message in _Batch(self, i, self.start_ms + offset).build(models[i], first, n))
        yield from stream if self.scenario is None else self.scenario.stream(stream, self)

    def dry_run(self) -> Summary:
        """The summary of the whole run, without a broker."""
        summary = self.new_summary()
        for message in self.messages():
            summary.add(message)
        return summary

    def new_summary(self) -> Summary:
        return Summary(seed=self.seed, start_ms=self.start_ms, topic_prefix=self.topic_prefix,
                       mode=self.pacing.mode, devices=len(self.devices))

    def reading_ts(self, i: int, k: int) -> int:
        return self.start_ms + self._phases[i] + k * self._intervals[i]


class _Batch:
    """Turns the readings of one scheduled message into SimMessages, applying the planned faults."""

    def __init__(self, sim: DistrictSimulator, index: int, sim_ms: int) -> None:
        self.sim, self.index, self.sim_ms = sim, index, sim_ms
        self.device = sim.devices[index]
        self.topic = telemetry_topic(self.device.site, self.device.system.value, self.device.id,
                                     sim.topic_prefix)

    def build(self, model: DeviceModel | ScenarioModel, first: int, n: int) -> list[SimMessage]:
        before: list[SimMessage] = []  # message-level faults, split out of the batch
        after: list[SimMessage] = []  # duplicates and unknown devices, beside a clean reading
        kept: list[dict[str, Any]] = []
        records: list[FaultRecord] = []
        valid = points = 0
        point_ts: list[int] = []
        for k in range(first, first + n):
            # Sampled even when the reading is then broken, so faults never shift the clean values.
            reading: dict[str, Any] = {"seq": k + 1, "ts": self.sim.reading_ts(self.index, k)}
            reading["values"] = model.sample(reading["ts"])
            fault = self.sim.plan.get((self.index, k))
            if fault is None or fault.reason in EXTRA:
                if fault is not None:
                    after.append(self._extra(fault, reading))
                kept.append(reading)
                valid, points = valid + 1, points + 1
                point_ts.append(reading["ts"])
            elif fault.level is Level.MESSAGE:
                before.append(self._message_fault(fault, reading))
            elif fault.level is Level.READING:
                kept.append(break_reading(fault, reading))
                records.append(fault.record(self.topic, self.device.id, k + 1))
            else:
                values = break_field(fault, reading["values"], self.device.profile.measurements)
                kept.append({**reading, "values": values})
                records.append(fault.record(self.topic, self.device.id, k + 1))
                # An unknown field is refused alone; a broken known field takes one field off the point.
                good = len(reading["values"]) - (fault.reason is not Reason.UNKNOWN_MEASUREMENT)
                valid += 1
                if good > 0:
                    points += 1
                    point_ts.append(reading["ts"])
        main: list[SimMessage] = []
        if kept:
            span = (min(point_ts), max(point_ts)) if point_ts else None
            main.append(self._message(self.topic, self.device.id, encode(self._body(self.device.id, kept)),
                                      len(kept), valid, points, tuple(records), span))
        return before + main + after

    def _body(self, device_id: str, readings: list[dict[str, Any]]) -> dict[str, Any]:
        if self.sim.batch > 1:
            return {"device": device_id, "readings": readings}
        return {"device": device_id, **readings[0]}

    def _message(self, topic: str, device_id: str, payload: bytes, readings: int, valid: int, points: int,
                 faults: tuple[FaultRecord, ...], span: tuple[int, int] | None = None) -> SimMessage:
        return SimMessage(topic, payload, self.sim_ms, device_id, self.device.profile.type,
                          self.device.system.value, readings, valid, points, faults, span)

    def _message_fault(self, fault: PlannedFault, reading: dict[str, Any]) -> SimMessage:
        payload = break_message(fault, self._body(self.device.id, [reading]), self.sim.max_payload_bytes)
        record = fault.record(self.topic, self.device.id, reading["seq"])
        return self._message(self.topic, self.device.id, payload, 1, 0, 0, (record,))

    def _extra(self, fault: PlannedFault, reading: dict[str, Any]) -> SimMessage:
        if fault.reason is Reason.DUPLICATE_SEQUENCE:  # the very same reading again
            record = fault.record(self.topic, self.device.id, reading["seq"])
            return self._message(self.topic, self.device.id, encode(self._body(self.device.id, [reading])),
                                 1, 0, 0, (record,))
        ghost = fault.other_id or "unknown"
        topic = telemetry_topic(self.device.site, self.device.system.value, ghost, self.sim.topic_prefix)
        payload = encode(self._body(ghost, [{**reading, "seq": 1}]))
        return self._message(topic, ghost, payload, 1, 0, 0, (fault.record(topic, ghost, 1),))
