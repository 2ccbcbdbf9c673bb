"""InfluxDB line protocol serialisation (https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/).

Hand-written rather than influxdb-client's ``Point``: this is the hot path (one call per reading) and
``Point`` builds several intermediate objects per field. Escaping follows the reference exactly, so a
name can never add a tag, a field or a point; identifiers are already restricted by the profile schema.
Timestamps are written in nanoseconds: readings carry millisecond device time (times 10^6), dead letters
and self-metrics add a sub-millisecond counter so that two of them never share a point key.

Ranges (measured against influxd 1.6: each bound + 1 is a 400 for the whole line): integers are signed
64-bit, floats finite, timestamps within +-(2^63 - 2) ns. Strings are cut to 64 KiB (the documented
limit of InfluxDB 1.x and 2.x; 1.6 takes more, but an archive or a v2 server may not). A value outside
its range raises ``LineRangeError`` here instead of becoming a line the server refuses: every emitter
keeps its values in range by construction, and the tests feed each one the extremes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import orjson

from citytelemetry.records import FieldValue, Reading

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
# InfluxDB's parser takes a backslash as escaping whatever follows it, and refuses a doubled one before a
# separator (``a\\=1`` is "invalid field format" on influxd 1.6, measured). So backslashes right before a
# separator or at the end are dropped: ``a\ b`` would otherwise end the key at that space (hypothesis
# found it). Keys come from profiles and the inventory; this only keeps a pathological one writable.
_LOOSE_KEY_BACKSLASHES = re.compile(r"\\+(?=[,= ]|$)")
_LOOSE_MEASUREMENT_BACKSLASHES = re.compile(r"\\+(?=[, ]|$)")
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n", "\r": r"\r"})

NS_PER_MS = 1_000_000
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
TIME_NS_MIN = -(2**63) + 2  # influxd: "time outside range -9223372036854775806 - 9223372036854775806"
TIME_NS_MAX = 2**63 - 2
MAX_STRING_BYTES = 64 * 1024
_INF = math.inf
SEQ_FIELD = "seq"  # reserved: profiles may not name a measurement "seq"
_SEQ = SEQ_FIELD.encode()


class LineRangeError(ValueError):
    """A value has no line-protocol form (an integer beyond 64 bits, NaN, a time beyond year 2262)."""


def bounded_string(text: str, limit: int = MAX_STRING_BYTES) -> str:
    """``text`` cut so that, UTF-8 encoded and escaped (at most 2x), it stays within ``limit`` bytes."""
    if len(text) * 4 <= limit:  # the common case: no character is more than 4 bytes
        return text
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) * 2 <= limit:
        return text
    return encoded[: limit // 2].decode("utf-8", errors="ignore")  # never inside a character


def saturated(count: int) -> int:
    """A counter as a 64-bit integer field: past 2^63 - 1 it stays there (a device can claim a gap that big)."""
    return min(count, INT64_MAX)


def escape_measurement(name: str) -> str:
    return _LOOSE_MEASUREMENT_BACKSLASHES.sub("", name).translate(_MEASUREMENT_ESCAPES)


def escape_key(name: str) -> str:
    """Tag keys, tag values and field keys."""
    return _LOOSE_KEY_BACKSLASHES.sub("", name).translate(_KEY_ESCAPES) or "_"


def format_field_value(value: FieldValue) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise LineRangeError(f"integer {str(value)[:24]}... does not fit in 64 bits")
        return f"{value}i"
    if type(value) is float:
        if not math.isfinite(value):
            raise LineRangeError("line protocol has no NaN or infinity")
        return repr(value)
    return '"' + bounded_string(str(value)).translate(_STRING_ESCAPES) + '"'


def format_tags(tags: tuple[tuple[str, str], ...]) -> str:
    return "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in tags if v)


def format_line(measurement: str, tags: tuple[tuple[str, str], ...], fields: Mapping[str, FieldValue],
                timestamp_ns: int) -> bytes:
    """One point; raises ``LineRangeError`` for a value or time out of range, or no fields at all."""
    if not TIME_NS_MIN <= timestamp_ns <= TIME_NS_MAX:
        raise LineRangeError(f"timestamp {timestamp_ns} ns is outside what InfluxDB stores")
    if not fields:
        raise LineRangeError(f"a {measurement} point needs at least one field")
    if "time" in fields:  # influxd drops a field named time (and refuses a point with no other field)
        raise LineRangeError(f"a {measurement} point cannot have a field named time")
    field_text = ",".join(f"{escape_key(k)}={format_field_value(v)}" for k, v in fields.items())
    line = f"{escape_measurement(measurement)}{format_tags(tags)} {field_text} {timestamp_ns}"
    return line.encode("utf-8", errors="replace")  # a lone surrogate must not make the line unwritable


# Hot path (measured: 3.5 of 6.3 s per 100k readings went to escaping the same series and keys again):
# the escaped "measurement,tags" of a series and escaped field keys are computed once and cached.
# Both are bounded by the inventory and the profiles; the caches are cleared if they ever grow past that.
_SERIES_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}
_KEY_CACHE: dict[str, str] = {}
_PLAIN_KEYS: dict[str, bool] = {}
_CACHE_LIMIT = 200_000
_plain_key = re.compile(r"[A-Za-z0-9_]+").fullmatch


def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> bytes:
    key = (measurement, tags)
    series = _SERIES_CACHE.get(key)
    if series is None:
        if len(_SERIES_CACHE) >= _CACHE_LIMIT:
            _SERIES_CACHE.clear()
        series = _SERIES_CACHE[key] = (escape_measurement(measurement) + format_tags(tags)).encode()
    return series


# Hashing the key above hashes all 7-8 tag pairs of a district device on every reading (2.2 of 13.6 µs
# per reading, compiled). A device's readings carry its catalog entry's own tags tuple, so a cache keyed by
# (measurement, device) and checked by identity answers without that; other tags fall back to _series.
_DEVICE_SERIES: dict[tuple[str, str], tuple[tuple[tuple[str, str], ...], bytes]] = {}


def _device_series(measurement: str, device_id: str, tags: tuple[tuple[str, str], ...]) -> bytes:
    key = (measurement, device_id)
    found = _DEVICE_SERIES.get(key)
    if found is not None and found[0] is tags:
        return found[1]
    if len(_DEVICE_SERIES) >= _CACHE_LIMIT:
        _DEVICE_SERIES.clear()
    series = _series(measurement, tags)
    _DEVICE_SERIES[key] = (tags, series)
    return series


def _field_prefix(name: str) -> str:
    """``escaped_key=``: the part of a field that only depends on its name."""
    prefix = _KEY_CACHE.get(name)
    if prefix is None:
        if len(_KEY_CACHE) >= _CACHE_LIMIT:
            _KEY_CACHE.clear()
        prefix = _KEY_CACHE[name] = escape_key(name) + "="
    return prefix


_PLAIN_STRINGS: dict[str, bool] = {}


def plain_string(value: str) -> bool:
    """Printable, no quote, no backslash, no comma, surely under the 64 KiB cut: JSON and line protocol
    write it alike (enum states are), and ``_field_text``'s punctuation replacement cannot meet it (a
    trailing comma before the closing quote reads as a field separator: hypothesis found ``","``).
    Longer strings take the general path, which cuts them."""
    if len(value) > MAX_STRING_BYTES // 4:  # UTF-8 is at most 4 bytes a character
        return False
    known = _PLAIN_STRINGS.get(value)
    if known is None:
        if len(_PLAIN_STRINGS) >= _CACHE_LIMIT:
            _PLAIN_STRINGS.clear()
        known = _PLAIN_STRINGS[value] = (value.isprintable() and '"' not in value and "\\" not in value
                                          and "," not in value)
    return known


def _plain_floats(fields: Mapping[str, FieldValue]) -> bool:
    """Only finite floats, booleans and plain strings under keys that need no escaping (every profile
    measurement is such a key): what orjson writes the same way as line protocol. Integers need their
    ``i`` suffix and take the general path."""
    plain = _PLAIN_KEYS
    for key, value in fields.items():
        kind = type(value)
        if kind is float:
            if not -_INF < value < _INF:  # type: ignore[operator]  # NaN fails both comparisons
                return False
        elif kind is str:
            if not plain_string(value):  # type: ignore[arg-type]
                return False
        elif kind is not bool:
            return False
        known = plain.get(key)
        if known is None:
            if len(plain) >= _CACHE_LIMIT:
                plain.clear()
            known = plain[key] = _plain_key(key) is not None
        if not known:
            return False
    return True


def _field_text(fields: Mapping[str, FieldValue], plain: bool) -> bytes:
    if fields and (plain or _plain_floats(fields)):
        # orjson writes {"k1":v1,"k2":"s",...}; with plain keys, finite floats, booleans and strings with no
        # quote (so '":' and ',"' occur only between fields), dropping the JSON punctuation leaves exactly
        # k1=v1,k2="s" (its shortest round-trip floats are valid line protocol floats). Measured: 0.7 µs for
        # five floats against 2.3 µs with repr() per field; a district reading (floats, enum states,
        # booleans) 7.1 µs by the general path.
        return orjson.dumps(fields)[2:-1].replace(b'":', b"=").replace(b',"', b",")
    parts = []
    for key, value in fields.items():
        kind = type(value)
        if kind is int and INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            parts.append(f"{_field_prefix(key)}{value}i")
        else:
            parts.append(_field_prefix(key) + format_field_value(value))
    return ",".join(parts).encode()


def reading_line(reading: Reading) -> bytes:
    """A reading's point; its device sequence number rides along as the integer field ``seq`` so that
    completeness (gaps, duplicates) can be audited from InfluxDB alone. The validator keeps values, seq
    and time in range; a value that is not raises ``LineRangeError`` (the handler refuses the reading)."""
    series = _device_series(reading.measurement, reading.device_id, reading.tags)
    fields = _field_text(reading.fields, reading.plain)
    timestamp_ns = reading.timestamp_ms * NS_PER_MS
    if reading.seq >= 0:  # status records have no sequence number
        return b"%b %b,%b=%di %d" % (series, fields, _SEQ, reading.seq, timestamp_ns)
    return b"%b %b %d" % (series, fields, timestamp_ns)
