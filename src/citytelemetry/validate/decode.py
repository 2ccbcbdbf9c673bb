"""Payload decoding: bytes -> a JSON object, or a reason-coded refusal, strict by structure.

orjson is strict JSON: NaN, Infinity and numbers beyond the double range (``1e400``, a 400-digit
integer) are refused as not_json; integers beyond 64 bits but within the double range are read as
floats (and then fail the range or type checks). Two more rules, checked on the structure, never on
how the text happens to be spelled:

- **Duplicate keys** (at any depth, however spelled: spaces before the colon, ``\\u`` escapes) are
  not_json: orjson keeps the last, another parser (a gateway, an archive) may keep the first.
- **Nesting deeper than ``MAX_DEPTH``** is not_json, like orjson's own limit (1024); nothing here
  recurses, so no payload can raise RecursionError.

Why the duplicate check is sound and cheap: in JSON every key is followed by exactly one structural
colon and no colon is structural otherwise, so the colons of the text outside strings count the key
occurrences exactly, and ``payload.count(b":")`` is an upper bound of that (colons inside strings
only add). orjson keeps one entry per distinct key, so the parsed objects hold as many keys as the
text only when no key was repeated. The cheap count settles almost every payload; one with colons
inside strings (RFC 3339 timestamps) is settled by a second bound (``_no_repeated_key``), and only when
neither is exact (a repeat, or ``":`` inside strings) are the strings cut out of the text and the
colons left counted (a C-speed regex). A real repeat is named by json.loads, after a depth bound.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

from citytelemetry.records import Reason

MAX_DEPTH: Final = 32  # a batch is 4 levels deep (payload, readings, reading, values)
# A JSON string (the text is valid JSON when this runs): quote, then non-quote non-backslash runs
# and escapes, unrolled so that matching is linear.
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE: Final = bytes.maketrans(b"{}", b"[]")


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
    if type(data) is not dict:  # orjson builds exact dicts and lists
        raise DecodeRejected(Reason.BAD_SCHEMA, f"payload must be a JSON object, got {type(data).__name__}")
    keys = _count_keys(data)
    if payload.count(b":") != keys and not _no_repeated_key(payload, keys):
        _refuse_duplicate_keys(payload)
    return data


def _no_repeated_key(payload: bytes, keys: int) -> bool:
    """The text has more colons than orjson kept keys: are the extra ones all inside strings?

    Without whitespace, every structural colon directly follows its key's closing quote, so the
    ``'":'`` of the text with JSON's four whitespace characters deleted bound the key occurrences from
    above too (inside strings, deleting can only add some). When that bound is not exact either, the
    strings are cut out of the text and the colons left are counted exactly (a regex, ~3x a parse)."""
    if payload.translate(None, b" \t\n\r").count(b'":') == keys:
        return True
    return _STRING.sub(b"", payload).count(b":") == keys


def _too_deep() -> DecodeRejected:
    return DecodeRejected(Reason.NOT_JSON, f"payload is nested deeper than {MAX_DEPTH} levels")


# Level by level instead of recursion: the depth is checked before a level is entered, so no payload
# can exhaust the C or Python stack. Exact type checks are enough (orjson only builds dict and list);
# typed locals and plain loops let mypyc iterate natively, and a flat payload allocates no level.
def _count_keys(root: dict[str, Any]) -> int:
    count = len(root)
    level = _nested_in_dict(root, [])
    depth = 2
    while level:
        if depth > MAX_DEPTH:
            raise _too_deep()
        deeper: list[Any] = []
        for container in level:
            if type(container) is dict:
                count += len(container)
                _nested_in_dict(container, deeper)
            else:
                _nested_in_list(container, deeper)
        level = deeper
        depth += 1
    return count


def _nested_in_dict(mapping: dict[str, Any], into: list[Any]) -> list[Any]:
    for value in mapping.values():
        if type(value) is dict or type(value) is list:
            into.append(value)  # noqa: PERF401 - a loop compiles to native iteration (mypyc)
    return into


def _nested_in_list(items: list[Any], into: list[Any]) -> None:
    for value in items:
        if type(value) is dict or type(value) is list:
            into.append(value)  # noqa: PERF401 - as above


def _text_depth(payload: bytes) -> int:
    """The nesting depth of valid JSON text, without parsing it: strings cut out, brackets kept, then
    one C-speed pass per level removes the innermost empty pairs. Stops counting past ``MAX_DEPTH``."""
    brackets = _STRING.sub(b"", payload).translate(_SQUARE, _NOT_BRACKETS)
    depth = 0
    while brackets and depth <= MAX_DEPTH:
        brackets = brackets.replace(b"[]", b"")
        depth += 1
    return depth


def _refuse_duplicate_keys(payload: bytes) -> None:
    """Reached only when the text holds more keys than orjson kept: a key is repeated somewhere. Name it
    (json.loads, after bounding the depth: a dropped duplicate may hide deeper nesting than we walked)."""
    if _text_depth(payload) > MAX_DEPTH:
        raise _too_deep()

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                raise DecodeRejected(Reason.NOT_JSON, f"duplicate key {key[:64]!r}")
            seen.add(key)
        return dict(items)

    json.loads(payload, object_pairs_hook=pairs)
    raise DecodeRejected(Reason.NOT_JSON, "duplicate key")  # unreachable for valid JSON: the count said so


# C0 controls and DEL as their Unicode "control pictures" (U+2400 ...): a refused key with a newline is
# stored as "o2␊ct_rejects", one visible character per control, never a backslash escape that a reader
# cannot tell from a backslash the device sent. Other non-printables (bidi overrides, C1) become U+FFFD.
_PICTURES: Final = {**{c: chr(0x2400 + c) for c in range(0x20)}, 0x7F: "\u2421"}


def readable(text: str) -> str:
    """``text`` with every non-printable character replaced by a visible one (controls by their picture)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _PICTURES.get(ord(ch), "\ufffd") for ch in text)


def excerpt(payload: bytes, limit: int = 256) -> str:
    """A bounded, printable excerpt of a payload for the dead-letter record."""
    text = readable(payload[:limit].decode("utf-8", errors="replace"))
    return text + ("…" if len(payload) > limit else "")
