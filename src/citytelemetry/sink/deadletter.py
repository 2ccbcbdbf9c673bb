"""Dead letters as records: one durable ``ct_rejects`` point per refused message (written through the
same buffered sink, so the message is acknowledged only once its dead letter is stored) and one live
JSON notice on ``<prefix>/deadletter/<reason>``.

Tags are bounded: the reason code (the message's most frequent one), the pipeline instance, and the
device's inventory tags only when the device is in the inventory. Fields: ``count`` (refusals in the
message: ``sum("count")`` counts refusals, ``count("count")`` refused messages), ``reasons``
(``unknown_measurement=5000,...``), ``detail``, ``topic``, ``excerpt`` (256 characters), ``field`` (the
first refused keys, comma-separated), ``seq`` (the first refused reading's; ``seq_text`` instead when it
does not fit in a 64-bit integer field, which InfluxDB would refuse) and ``suppressed`` (dead letters
of this device not written since its previous one, see deadletters/budget.py). Every field keeps its
line-protocol type whatever a device sends, so a dead letter is never refused for its own shape.
"""

from __future__ import annotations

import itertools

import orjson

from citytelemetry.deadletters.summary import MAX_FIELDS_CHARS, DeadLetter
from citytelemetry.measurements import REJECTS
from citytelemetry.profiles import Catalog
from citytelemetry.sink.line_protocol import INT64_MAX, INT64_MIN, NS_PER_MS, format_line


def _seq_fields(seq: int | None) -> dict[str, str | int]:
    if seq is None:
        return {}
    if INT64_MIN <= seq <= INT64_MAX:
        return {"seq": seq}
    return {"seq_text": str(seq)[:40]}


class DeadLetterFormatter:
    """Formats dead letters; a sub-millisecond counter keeps two of them from sharing a point key."""

    __slots__ = ("_catalog", "_counter", "_instance")

    def __init__(self, catalog: Catalog, instance: str) -> None:
        self._catalog = catalog
        self._instance = instance
        self._counter = itertools.count()

    def line(self, dead: DeadLetter, received_ms: int, *, suppressed: int = 0) -> bytes:
        tags: tuple[tuple[str, str], ...] = (("instance", self._instance), ("reason", dead.reason.value))
        device = self._catalog.devices.get(dead.device_id) if dead.device_id else None
        if device is not None:
            tags = tuple(sorted((*tags, *device.tags)))
        fields: dict[str, str | int] = {"detail": dead.detail, "topic": dead.topic[:256], "excerpt": dead.excerpt,
                                        "count": dead.total, "reasons": dead.reasons_text}
        fields.update(_seq_fields(dead.seq))
        if dead.field_names:
            fields["field"] = ",".join(dead.field_names)[:MAX_FIELDS_CHARS]
        if suppressed:
            fields["suppressed"] = suppressed
        timestamp_ns = received_ms * NS_PER_MS + next(self._counter) % NS_PER_MS
        return format_line(REJECTS, tags, fields, timestamp_ns)

    def notice(self, dead: DeadLetter, received_ms: int, *, suppressed: int = 0) -> bytes:
        seq = dead.seq if dead.seq is None or INT64_MIN <= dead.seq <= INT64_MAX else str(dead.seq)[:40]
        return orjson.dumps({
            "reason": dead.reason.value, "count": dead.total,
            "reasons": {reason.value: count for reason, count in dead.counts}, "detail": dead.detail,
            "topic": dead.topic, "device": dead.device_id, "seq": seq,
            "field": dead.field_names[0] if dead.field_names else None, "fields": list(dead.field_names),
            "excerpt": dead.excerpt, "received_ms": received_ms, "instance": self._instance,
            "suppressed": suppressed,
        })
