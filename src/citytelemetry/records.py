"""The one record type every stage shares, and the fates a message can meet.

A message from a device ends in exactly one of these ways, per reading or per field:
written (it became an InfluxDB point), or rejected with a ``Reason`` (dead-lettered and counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

FieldValue = float | int | bool | str


class Reason(StrEnum):
    """Reason codes of a rejection; documented one by one in docs/device-contract.md."""

    BAD_TOPIC = "bad_topic"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    BAD_SCHEMA = "bad_schema"
    TOO_MANY_READINGS = "too_many_readings"
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_MISMATCH = "device_mismatch"
    UNKNOWN_MEASUREMENT = "unknown_measurement"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    DUPLICATE_SEQUENCE = "duplicate_sequence"
    STALE_SEQUENCE = "stale_sequence"
    DUPLICATE_TIMESTAMP = "duplicate_timestamp"
    WRITE_REJECTED = "write_rejected"
    RATE_LIMITED = "rate_limited"
    PROCESSING_ERROR = "processing_error"


class Delivery(Protocol):
    """The broker-side handle of one message: settle it once its fate is durable downstream."""

    def settle(self) -> None: ...


# The hot records below are built once per message or reading. Each writes its own ``__init__``
# (``init=False``): under mypyc that is a native constructor, while the one ``dataclass`` generates is an
# interpreted function called through ``tp_init`` with a keyword dict (measured: 172 -> 29 ns a
# construction; a W1 message built a Reading and an Outcome that way, 5.7k instructions). The dataclass
# still gives them ``__eq__`` and ``__repr__``. Not frozen, on purpose: a frozen dataclass sets every
# attribute through object.__setattr__. Treat them as immutable all the same.
@dataclass(slots=True, init=False)
class InboundMessage:
    """A message as received from the broker, before any interpretation."""

    topic: str
    payload: bytes
    received_ms: int
    delivery: Delivery

    def __init__(self, topic: str, payload: bytes, received_ms: int, delivery: Delivery) -> None:
        self.topic, self.payload, self.received_ms, self.delivery = topic, payload, received_ms, delivery


@dataclass(slots=True, init=False)
class Reading:
    """One validated observation of one device: becomes exactly one InfluxDB point.

    ``tags`` come from the inventory only (bounded cardinality); ``fields`` carry the
    Python type fixed by the profile (int stays int, float stays float). ``plain``: the validator
    vouches that every field is a finite float, a boolean or a plain enum state under a plain key, which
    is what lets the line protocol skip checking that per field (``sink.line_protocol``); never needed.
    It was never hashable (``fields`` is a dict).
    """

    measurement: str
    device_id: str
    tags: tuple[tuple[str, str], ...]
    fields: dict[str, FieldValue]
    timestamp_ms: int
    seq: int
    plain: bool

    def __init__(self, measurement: str, device_id: str, tags: tuple[tuple[str, str], ...],
                 fields: dict[str, FieldValue], timestamp_ms: int, seq: int, plain: bool = False) -> None:
        self.measurement, self.device_id, self.tags, self.fields = measurement, device_id, tags, fields
        self.timestamp_ms, self.seq, self.plain = timestamp_ms, seq, plain


@dataclass(slots=True, frozen=True)
class Rejection:
    """A refused message, reading or field, with enough context to find and fix the sender."""

    reason: Reason
    detail: str
    topic: str
    excerpt: str
    device_id: str | None = None  # set only when the device is in the inventory (bounded tag)
    measurement: str | None = None
    seq: int | None = None


@dataclass(slots=True, init=False)
class Outcome:
    """What validation made of one MQTT message."""

    readings: list[Reading]
    rejections: list[Rejection]

    def __init__(self, readings: list[Reading] | None = None, rejections: list[Rejection] | None = None) -> None:
        self.readings = [] if readings is None else readings
        self.rejections = [] if rejections is None else rejections
