"""Payload decoding: bytes -> a JSON object, or a reason-coded refusal. orjson is strict JSON:
NaN, Infinity and integers beyond 64 bits are refused as not_json."""

from __future__ import annotations

from typing import Any

import orjson

from citytelemetry.records import Reason


class DecodeRejected(Exception):  # noqa: N818 - a signal, not an error of ours
    __slots__ = ("detail", "reason")

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def decode_object(payload: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as utf_exc:
            raise DecodeRejected(Reason.NOT_UTF8, f"payload is not UTF-8: {utf_exc.reason} at byte "
                                 f"{utf_exc.start}") from None
        raise DecodeRejected(Reason.NOT_JSON, f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeRejected(Reason.BAD_SCHEMA, f"payload must be a JSON object, got {type(data).__name__}")
    return data


def excerpt(payload: bytes, limit: int = 256) -> str:
    """A bounded, printable excerpt of a payload for the dead-letter record."""
    text = payload[:limit].decode("utf-8", errors="replace")
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
    return text + ("…" if len(payload) > limit else "")
