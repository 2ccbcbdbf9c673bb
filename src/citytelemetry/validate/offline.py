"""The validator as the pipeline configures it, for one message at a time outside the pipeline.

``citytelemetry check`` and ``deadletters replay`` use it: the same profiles, inventory, limits and topic
prefix, with no rate limit and fresh sequence state (the running pipeline's is not visible from here),
so what it refuses is refused by the message itself and the profiles as they are now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from citytelemetry.config import Settings
from citytelemetry.contracts import InboundMessage
from citytelemetry.profiles import Catalog
from citytelemetry.records import Outcome, Reason, Rejection
from citytelemetry.sink.line_protocol import LineRangeError, reading_line
from citytelemetry.validate.validator import Limits, MessageValidator


def limits_from(settings: Settings) -> Limits:
    p = settings.pipeline
    return Limits(max_payload_bytes=p.max_payload_bytes, max_readings_per_message=p.max_readings_per_message,
                  max_future_s=p.max_future_s, max_age_s=p.max_age_s)


def offline_validator(settings: Settings, catalog: Catalog) -> MessageValidator:
    return MessageValidator(catalog, limits_from(settings), topic_prefix=settings.mqtt.topic_prefix)


class _Unacknowledged:
    """No broker behind an offline message: nothing to settle."""

    def settle(self) -> None:
        return None


def offline_message(topic: str, payload: bytes, received_ms: int | None = None) -> InboundMessage:
    return InboundMessage(topic, payload, time.time_ns() // 1_000_000 if received_ms is None else received_ms,
                          _Unacknowledged())


@dataclass(slots=True)
class Checked:
    """What one message gives: the reading lines the pipeline would write, and every refusal."""

    lines: list[bytes] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def check(validator: MessageValidator, message: InboundMessage) -> Checked:
    outcome: Outcome = validator(message)
    checked = Checked(rejections=list(outcome.rejections))
    for reading in outcome.readings:
        try:
            checked.lines.append(reading_line(reading))
        except LineRangeError as exc:  # the handler refuses such a reading the same way
            checked.rejections.append(Rejection(
                reason=Reason.PROCESSING_ERROR, detail=f"unwritable reading: {exc}", topic=message.topic,
                excerpt="", device_id=reading.device_id, seq=reading.seq if reading.seq >= 0 else None))
    return checked
