"""Dead letters: every rejection becomes a durable ``ct_rejects`` point in InfluxDB (written through the
same buffered sink, so the message is acknowledged only once its rejection is stored) and a live
JSON notice on ``<prefix>/deadletter/<reason>``.

Tags are bounded: the reason code, the pipeline instance, and the device's inventory tags only when the
device is in the inventory. The topic, detail and a 256-character excerpt are fields, never tags.
"""

from __future__ import annotations

import itertools

import orjson

from citytelemetry.measurements import REJECTS
from citytelemetry.profiles import Catalog
from citytelemetry.records import Rejection
from citytelemetry.sink.line_protocol import NS_PER_MS, format_line


class DeadLetterFormatter:
    """Formats rejections; a sub-millisecond counter keeps two rejections from sharing a point key."""

    __slots__ = ("_catalog", "_counter", "_instance")

    def __init__(self, catalog: Catalog, instance: str) -> None:
        self._catalog = catalog
        self._instance = instance
        self._counter = itertools.count()

    def line(self, rejection: Rejection, received_ms: int) -> bytes:
        tags: tuple[tuple[str, str], ...] = (("instance", self._instance), ("reason", rejection.reason.value))
        device = self._catalog.devices.get(rejection.device_id) if rejection.device_id else None
        if device is not None:
            tags = tuple(sorted((*tags, *device.tags)))
        fields: dict[str, str | int] = {"detail": rejection.detail[:512], "topic": rejection.topic[:256],
                                        "excerpt": rejection.excerpt, "count": 1}
        if rejection.seq is not None:
            fields["seq"] = rejection.seq
        if rejection.measurement is not None:
            fields["field"] = rejection.measurement
        timestamp_ns = received_ms * NS_PER_MS + next(self._counter) % NS_PER_MS
        return format_line(REJECTS, tags, fields, timestamp_ns)

    def notice(self, rejection: Rejection, received_ms: int) -> bytes:
        return orjson.dumps({
            "reason": rejection.reason.value, "detail": rejection.detail, "topic": rejection.topic,
            "device": rejection.device_id, "seq": rejection.seq, "field": rejection.measurement,
            "excerpt": rejection.excerpt, "received_ms": received_ms, "instance": self._instance,
        })
