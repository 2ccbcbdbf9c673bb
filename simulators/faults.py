"""Deliberately bad messages, readings and fields, each with the rejection the pipeline must give.

A fault is planned on one reading slot of one device (its k-th reading, seq k + 1), so the number
of faults is exact and the rest of the stream is untouched. Three levels, as the pipeline rejects them:

- ``message``: the whole message is refused (not_json, not_utf8, bad_schema, payload_too_large,
  device_mismatch, unknown_device). The slot's seq is consumed and its reading lost.
- ``reading``: one reading is refused (timestamp_in_future, timestamp_too_old, duplicate_sequence);
  the other readings of a batch land.
- ``field``: one field is refused (unknown_measurement, wrong_type, out_of_range); the reading
  still becomes a point with its other fields.

unknown_device and duplicate_sequence are sent *in addition* to the slot's reading, which stays
clean: a device unknown to the inventory has no slot of its own, and a duplicate re-sends a reading
that already landed (the last reading of its message, so its seq equals the last seq seen).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from citytelemetry.profiles.catalog import RegisteredDevice
from citytelemetry.profiles.models import Measurement, ValueType
from citytelemetry.records import FieldValue, Reason

DAY_MS = 86_400_000
MAX_PAYLOAD_BYTES = 65_536  # the pipeline's default limit (pipeline.max_payload_bytes)
UNKNOWN_FIELD = "unknown_sensor"


class Level(StrEnum):
    MESSAGE = "message"
    READING = "reading"
    FIELD = "field"


LEVELS: dict[Reason, Level] = {
    Reason.NOT_JSON: Level.MESSAGE,
    Reason.NOT_UTF8: Level.MESSAGE,
    Reason.BAD_SCHEMA: Level.MESSAGE,
    Reason.PAYLOAD_TOO_LARGE: Level.MESSAGE,
    Reason.UNKNOWN_DEVICE: Level.MESSAGE,
    Reason.DEVICE_MISMATCH: Level.MESSAGE,
    Reason.TIMESTAMP_IN_FUTURE: Level.READING,
    Reason.TIMESTAMP_TOO_OLD: Level.READING,
    Reason.DUPLICATE_SEQUENCE: Level.READING,
    Reason.UNKNOWN_MEASUREMENT: Level.FIELD,
    Reason.WRONG_TYPE: Level.FIELD,
    Reason.OUT_OF_RANGE: Level.FIELD,
}
FAULT_REASONS: tuple[Reason, ...] = tuple(LEVELS)
EXTRA = frozenset({Reason.UNKNOWN_DEVICE, Reason.DUPLICATE_SEQUENCE})  # sent beside a clean reading
BAD_SCHEMA_VARIANTS = 3  # an array, no "device", JSON encoded twice: all refused as a whole message


class FaultPlanError(ValueError):
    """The requested faults cannot be placed (unknown reason, or not enough eligible readings)."""


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One injected fault, as the pipeline should report it.

    ``device_id`` is the device of the topic; ``seq`` is None for message-level faults (the pipeline
    cannot attribute a seq to a message it refuses whole); ``field`` is set for field-level faults.
    """

    topic: str
    device_id: str
    seq: int | None
    reason: str
    level: str
    field: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PlannedFault:
    reason: Reason
    field: str | None = None  # field level: the key it breaks or adds
    other_id: str | None = None  # device_mismatch: id put in the payload; unknown_device: the topic's id
    variant: int = 0  # bad_schema: which way the shape is broken

    @property
    def level(self) -> Level:
        return LEVELS[self.reason]

    def record(self, topic: str, device_id: str, seq: int) -> FaultRecord:
        return FaultRecord(topic=topic, device_id=device_id,
                           seq=None if self.level is Level.MESSAGE else seq,
                           reason=self.reason.value, level=self.level.value, field=self.field)


def parse_fault_counts(spec: str) -> dict[str, int]:
    """Parse ``"not_json=2,out_of_range=3"``; ``all=N`` sets every reason to N."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, number = item.partition("=")
        if not sep or not number.strip().isdigit():
            raise FaultPlanError(f"fault spec {item!r}: expected reason=count")
        reasons = FAULT_REASONS if name.strip() == "all" else (_reason(name.strip()),)
        for reason in reasons:
            counts[reason.value] = int(number)
    return counts


def _reason(name: str) -> Reason:
    try:
        reason = Reason(name)
    except ValueError:
        reason = None
    if reason not in LEVELS:
        raise FaultPlanError(f"unknown fault {name!r}; choose from {', '.join(FAULT_REASONS)} or all")
    return reason


def check_counts(counts: Mapping[str, int]) -> dict[Reason, int]:
    """Validate reason names (``"all"`` sets every reason; named ones override it)."""
    checked = dict.fromkeys(FAULT_REASONS, counts["all"]) if "all" in counts else {}
    checked.update({_reason(str(name)): n for name, n in counts.items() if name != "all"})
    if any(n < 0 for n in checked.values()):
        raise FaultPlanError("fault counts must not be negative")
    return {r: checked[r] for r in FAULT_REASONS if checked.get(r)}


# --- planning -------------------------------------------------------------------------------


def _numeric_keys(device: RegisteredDevice) -> list[str]:
    return [k for k, m in device.profile.measurements.items()
            if m.value_type in (ValueType.FLOAT, ValueType.INT) and not m.monotonic]


def _candidates(reason: Reason, devices: Sequence[RegisteredDevice], slots: Sequence[int]) -> list[int]:
    live = [i for i, n in enumerate(slots) if n > 0]
    if reason not in (Reason.WRONG_TYPE, Reason.OUT_OF_RANGE):
        return live
    numeric = [i for i in live if _numeric_keys(devices[i])]
    # Prefer devices with another field, so the reading still lands as a point.
    return [i for i in numeric if len(devices[i].profile.measurements) > 1] or numeric


def _slot_ok(reason: Reason, k: int, count: int, batch: int) -> bool:
    # A duplicate re-sends the last reading of its message, so it never looks stale.
    return reason is not Reason.DUPLICATE_SEQUENCE or k % batch == batch - 1 or k == count - 1


class FaultPlanner:
    """Places the requested faults on distinct reading slots, deterministically from the seed."""

    def __init__(self, devices: Sequence[RegisteredDevice], slots: Sequence[int], *, batch: int,
                 seed: int) -> None:
        self._devices, self._slots, self._batch = devices, slots, batch
        self._rng = random.Random(f"{seed}:faults")
        self._known = {d.id for d in devices}
        self.plan: dict[tuple[int, int], PlannedFault] = {}

    def place(self, counts: Mapping[Reason, int]) -> dict[tuple[int, int], PlannedFault]:
        total, capacity = sum(counts.values()), sum(self._slots)
        if total > capacity:
            raise FaultPlanError(f"{total} faults requested but the run has only {capacity} readings; "
                                 "run longer or with more devices")
        for reason in FAULT_REASONS:
            for index in range(counts.get(reason, 0)):
                i, k = self._free_slot(reason)
                self.plan[i, k] = self._make(reason, i, index)
        return self.plan

    def _free_slot(self, reason: Reason) -> tuple[int, int]:
        candidates = _candidates(reason, self._devices, self._slots)
        if not candidates:
            raise FaultPlanError(f"no device in this run can carry a {reason} fault")
        weights = [self._slots[i] for i in candidates]
        for _ in range(200):
            i = self._rng.choices(candidates, weights)[0]
            k = self._rng.randrange(self._slots[i])
            if reason is Reason.DUPLICATE_SEQUENCE:
                k = min(k // self._batch * self._batch + self._batch, self._slots[i]) - 1
            if (i, k) not in self.plan:
                return i, k
        for i in candidates:  # crowded: take the first free slot, still deterministic
            for k in range(self._slots[i]):
                if (i, k) not in self.plan and _slot_ok(reason, k, self._slots[i], self._batch):
                    return i, k
        raise FaultPlanError(f"not enough free readings to place every {reason} fault; run longer")

    def _make(self, reason: Reason, i: int, index: int) -> PlannedFault:
        device = self._devices[i]
        if reason in (Reason.WRONG_TYPE, Reason.OUT_OF_RANGE):
            return PlannedFault(reason, field=self._rng.choice(_numeric_keys(device)))
        if reason is Reason.UNKNOWN_MEASUREMENT:
            field = UNKNOWN_FIELD
            while field in device.profile.measurements:
                field += "_x"
            return PlannedFault(reason, field=field)
        if reason is Reason.UNKNOWN_DEVICE:
            other = f"unknown-{index + 1:03d}"
            while other in self._known:
                other += "x"
            return PlannedFault(reason, other_id=other)
        if reason is Reason.DEVICE_MISMATCH:
            others = sorted(self._known - {device.id})
            other = self._rng.choice(others) if others else f"{device.id[:56]}-other"
            return PlannedFault(reason, other_id=other)
        if reason is Reason.BAD_SCHEMA:
            return PlannedFault(reason, variant=index % BAD_SCHEMA_VARIANTS)
        return PlannedFault(reason)


# --- breaking payloads ----------------------------------------------------------------------


def encode(body: Any) -> bytes:
    """Compact, deterministic JSON (no NaN: a simulator never sends one by accident)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def break_message(fault: PlannedFault, body: dict[str, Any],
                  max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The bytes of a message-level fault, from the well-formed payload ``body``."""
    good = encode(body)
    reason = fault.reason
    if reason is Reason.NOT_JSON:
        return good[: len(good) // 2]  # cut in the middle: an object never closes
    if reason is Reason.NOT_UTF8:
        return good.replace(b'"device":"', b'"device":"\xff', 1)  # 0xFF never occurs in UTF-8
    if reason is Reason.PAYLOAD_TOO_LARGE:
        return good + b" " * (max_payload_bytes + 1024 - len(good))  # still valid JSON: only size is wrong
    if reason is Reason.DEVICE_MISMATCH:
        return encode({**body, "device": fault.other_id})
    if reason is Reason.BAD_SCHEMA:
        return encode(_bad_shape(body, fault.variant))
    raise ValueError(f"{reason} is not a message-level fault")


def _bad_shape(body: dict[str, Any], variant: int) -> Any:
    if variant == 0:
        return [body]  # an array, not an object
    if variant == 1:
        return {k: v for k, v in body.items() if k != "device"}  # the envelope misses its device id
    return json.dumps(body)  # JSON encoded twice: a string, not an object


def break_reading(fault: PlannedFault, reading: dict[str, Any]) -> dict[str, Any]:
    if fault.reason is Reason.TIMESTAMP_IN_FUTURE:
        return {**reading, "ts": reading["ts"] + DAY_MS}
    if fault.reason is Reason.TIMESTAMP_TOO_OLD:
        return {**reading, "ts": reading["ts"] - 30 * DAY_MS}
    raise ValueError(f"{fault.reason} is not a reading-level fault that changes the reading")


def break_field(fault: PlannedFault, values: dict[str, FieldValue],
                measurements: Mapping[str, Measurement]) -> dict[str, Any]:
    key = fault.field
    if key is None:
        raise ValueError(f"{fault.reason} needs a field")
    broken: dict[str, Any] = dict(values)
    if fault.reason is Reason.UNKNOWN_MEASUREMENT:
        broken[key] = 1.0
    elif fault.reason is Reason.WRONG_TYPE:
        broken[key] = _wrong_type(values[key])
    elif fault.reason is Reason.OUT_OF_RANGE:
        broken[key] = out_of_range_value(measurements[key])
    else:
        raise ValueError(f"{fault.reason} is not a field-level fault")
    return broken


def _wrong_type(value: FieldValue) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)  # the classic firmware bug: a number sent as a string
    return 1  # an enum state sent as a number


def out_of_range_value(m: Measurement) -> float | int:
    """A value clearly above the physical range, of the measurement's own type."""
    if m.range is None:
        raise ValueError("out_of_range needs a numeric measurement")
    step = max(1.0, 0.1 * (m.range.max - m.range.min))
    if m.value_type is ValueType.INT:
        return math.floor(m.range.max) + math.ceil(step)
    return float(m.range.max + step)


def count_by_reason(records: Iterable[FaultRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.reason] = counts.get(record.reason, 0) + 1
    return counts
