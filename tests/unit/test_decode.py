"""The decoder is strict by structure: the same object spelled any JSON-equivalent way decodes to the same
dict; the same object with one key repeated (spelled any way, at any depth) is not_json; deep nesting is
not_json before anything recurses. Hypothesis writes the spellings; json.loads with a pairs hook is the
reference for what the text holds."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citytelemetry.records import Reason
from citytelemetry.validate.decode import MAX_DEPTH, DecodeRejected, decode_object, excerpt, readable

KEY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
SCALAR = (st.none() | st.booleans() | st.integers(-(2**63), 2**64) | st.floats(allow_nan=False, allow_infinity=False)
          | st.text(max_size=8) | st.sampled_from(["2026-05-28T20:26:40.250Z", "a:b", '"', "\\", ":"]))
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEY, inner, max_size=4),
                     max_leaves=12)
OBJECT = st.dictionaries(KEY, VALUE, max_size=5)
SPACE = st.sampled_from(["", " ", "\t", "\n", "\r\n  "])


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _string(draw: st.DrawFn, text: str) -> str:
    """``text`` as a JSON string, each character written plainly or as a \\u escape (surrogate pairs too)."""
    out = ['"']
    for ch in text:
        plain = json.dumps(ch, ensure_ascii=False)[1:-1]
        escaped = "".join(f"\\u{unit:04x}" for unit in
                          [int.from_bytes(ch.encode("utf-16-be")[i:i + 2], "big")
                           for i in range(0, len(ch.encode("utf-16-be")), 2)])
        out.append(draw(st.sampled_from([plain, escaped])))
    return "".join(out) + '"'


def _spell(draw: st.DrawFn, value: Any, duplicate: list[bool] | None = None) -> str:
    """One JSON spelling of ``value``: free whitespace, escapes in keys and strings, 1.0 vs 1.0e0 ... When
    ``duplicate`` holds [True], one object on the way (the first drawn) repeats one of its keys, spelled anew."""
    ws = lambda: draw(SPACE)  # noqa: E731 - a short local for readability
    if isinstance(value, dict):
        members = [(key, _spell(draw, item, duplicate)) for key, item in value.items()]
        if duplicate and duplicate[0] and members and draw(st.booleans()):
            key, _ = draw(st.sampled_from(members))
            members.insert(draw(st.integers(0, len(members))), (key, _spell(draw, draw(SCALAR))))
            duplicate[0] = False
        body = ",".join(f"{ws()}{_string(draw, key)}{ws()}:{ws()}{text}{ws()}" for key, text in members)
        return "{" + (body or ws()) + "}"
    if isinstance(value, list):
        return "[" + (",".join(f"{ws()}{_spell(draw, item, duplicate)}{ws()}" for item in value) or ws()) + "]"
    if isinstance(value, str):
        return _string(draw, value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return draw(st.sampled_from([repr(value), f"{int(value)}.0e0", f"{int(value)}E+0"]))
    return json.dumps(value)


def _reference(text: str) -> tuple[Any, bool]:
    """What the text holds, and whether any object in it repeats a key (json.loads keeps every pair)."""
    repeated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        repeated |= len({k for k, _ in items}) != len(items)
        return dict(items)

    return json.loads(text, object_pairs_hook=pairs), repeated


@settings(max_examples=200, deadline=None)
@given(st.data(), OBJECT)
def test_every_spelling_of_an_object_decodes_to_that_object(data: st.DataObject, obj: dict[str, Any]) -> None:
    text = _spell(data.draw, obj)
    assert _reference(text) == (obj, False)
    assert decode_object(text.encode()) == obj


@settings(max_examples=200, deadline=None)
@given(st.data(), OBJECT.filter(bool))
def test_a_repeated_key_is_not_json_however_it_is_spelled_and_wherever_it_is(
        data: st.DataObject, obj: dict[str, Any]) -> None:
    flag = [True]
    text = _spell(data.draw, obj, flag)
    _, repeated = _reference(text)
    if flag[0]:  # no object drew the repeat: the text is clean and must decode
        assert not repeated
        assert decode_object(text.encode()) == obj
        return
    assert repeated
    with pytest.raises(DecodeRejected) as refused:
        decode_object(text.encode())
    assert refused.value.reason is Reason.NOT_JSON
    assert refused.value.detail.startswith(("duplicate key", "payload is nested deeper"))


@pytest.mark.parametrize("text", [
    '{"o2":20.5,"o2" :24.9}',  # the audit's case: a space before the colon
    '{"o2":20.5,"o\\u0032":24.9}',  # an escape
    '{"device":"a","seq":1,"ts":1,"values":{},"d\\u0065vice":"b"}',
    '{"values":{"o2":1,"o2"\t:\n2}}',  # one level down
    '{"readings":[{"seq":1,"seq" : 2}]}',  # inside a list
    '{"ts":"2026-05-28T20:26:40.250Z","ts" :"2026-05-28T20:26:41.250Z"}',  # colons in strings too
    '{"\\ud83d\\ude00":1,"\U0001F600":2}',  # a surrogate pair and the character itself
    '{"a":"\\":","a":1}',  # a quote and a colon inside a string
    '{"a":" :x","b":"\\":", "a"\r\n:1}',
])
def test_duplicate_keys_of_the_audit_and_friends_are_not_json(text: str) -> None:
    with pytest.raises(DecodeRejected) as refused:
        decode_object(text.encode())
    assert refused.value.reason is Reason.NOT_JSON
    assert refused.value.detail.startswith("duplicate key")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 1023, 1025, 5000])
@pytest.mark.parametrize("shape", ["lists", "objects", "hidden in a dropped duplicate"])
def test_deep_nesting_is_not_json_and_nothing_recurses(depth: int, shape: str) -> None:
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    if shape == "objects":
        inner = '{"k":' * (depth - 1) + "1" + "}" * (depth - 1)
    text = f'{{"v":{inner}}}' if shape != "hidden in a dropped duplicate" else f'{{"v":{inner}, "v" :1}}'
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # anything of ours that recursed per level would fail at once
    try:
        with pytest.raises(DecodeRejected) as refused:
            decode_object(text.encode())
    finally:
        sys.setrecursionlimit(limit)
    assert refused.value.reason is Reason.NOT_JSON


def test_nesting_up_to_the_limit_is_read() -> None:
    inner = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert _depth(decode_object(f'{{"v":{inner}}}'.encode())) == MAX_DEPTH


@pytest.mark.parametrize("number", ["1" + "0" * 400, "-1" + "0" * 400, "1e400", "1E+400", "10e399"])
def test_a_number_beyond_the_double_range_is_not_json_however_written(number: str) -> None:
    with pytest.raises(DecodeRejected) as refused:
        decode_object(f'{{"v":{number}}}'.encode())
    assert refused.value.reason is Reason.NOT_JSON


@pytest.mark.parametrize(("number", "value"), [("18446744073709551616", 2.0**64), ("1" + "0" * 300, 1e300)])
def test_an_integer_beyond_64_bits_within_the_double_range_is_read_as_a_float(number: str, value: float) -> None:
    assert decode_object(f'{{"v":{number}}}'.encode()) == {"v": value}


@pytest.mark.parametrize(("payload", "reason"), [
    (b"[1]", Reason.BAD_SCHEMA), (b'"x"', Reason.BAD_SCHEMA), (b"null", Reason.BAD_SCHEMA),
    (b"\xff{}", Reason.NOT_UTF8), (b'{"a":"\xc3"}', Reason.NOT_UTF8),
    (b"{NaN}", Reason.NOT_JSON), (b'{"a":NaN}', Reason.NOT_JSON), (b"\xef\xbb\xbf{}", Reason.NOT_JSON),
    (b'{"a":"\\ud800"}', Reason.NOT_JSON),
])
def test_one_reason_code_per_class(payload: bytes, reason: Reason) -> None:
    with pytest.raises(DecodeRejected) as refused:
        decode_object(payload)
    assert refused.value.reason is reason


def test_controls_are_stored_as_their_pictures_and_other_non_printables_as_the_replacement_character() -> None:
    assert readable("o2\nct_rejects,reason=forged count=1i 1") == "o2\u240act_rejects,reason=forged count=1i 1"
    assert readable("a\x00b\tc\rd\x7fe\u202ef\x85") == "a\u2400b\u2409c\u240dd\u2421e\ufffdf\ufffd"
    assert readable("plain µ text") == "plain µ text"
    assert excerpt(b'{"o2\n": 1}') == '{"o2\u240a": 1}'
