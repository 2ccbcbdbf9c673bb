"""The subset of Grafana transformations the generated dashboards use, evaluated in Python.

Used by the preview and by the tests to compute what a KPI stat shows from the same query results:
``reduce`` (seriesToRows, lastNotNull), ``rowsToFields``, ``calculateField`` (reduceRow sum, binary
+ - * /) and ``filterByValue`` (include rows where any listed field equals a value).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Row = dict[str, Any]
_BINARY: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
}


class UnsupportedTransformationError(ValueError):
    """A transformation outside the subset evaluated here."""


def _operand(fields: Mapping[str, float | None], name: str) -> float | None:
    if name in fields:
        return fields[name]
    try:
        return float(name)
    except ValueError:
        return None


def _calculate(fields: dict[str, float | None], options: Mapping[str, Any]) -> dict[str, float | None]:
    alias = options["alias"]
    value: float | None
    if options["mode"] == "reduceRow":
        include = options["reduce"].get("include") or list(fields)
        present = [v for k, v in fields.items() if k in include and v is not None]
        value = sum(present) if present else None
    elif options["mode"] == "binary":
        spec = options["binary"]
        left, right = _operand(fields, spec["left"]), _operand(fields, spec["right"])
        try:
            value = None if left is None or right is None else _BINARY[spec["operator"]](left, right)
        except ZeroDivisionError:
            value = None
    else:
        raise UnsupportedTransformationError(f"calculateField mode {options['mode']!r}")
    if options.get("replaceFields"):
        return {alias: value}
    return {**fields, alias: value}


def reduce_fields(transformations: Sequence[Mapping[str, Any]],
                  last_values: Mapping[str, float | None]) -> dict[str, float | None]:
    """``last_values``: display name of each series -> its last non-null value (what reduce gives)."""
    fields: dict[str, float | None] = dict(last_values)
    for step in transformations:
        kind = step["id"]
        if kind == "reduce":
            if step["options"].get("mode") != "seriesToRows":
                raise UnsupportedTransformationError("reduce only in seriesToRows mode")
        elif kind == "rowsToFields":
            continue
        elif kind == "calculateField":
            fields = _calculate(fields, step["options"])
        else:
            raise UnsupportedTransformationError(kind)
    return fields


def filter_rows(transformations: Sequence[Mapping[str, Any]], rows: list[Row]) -> list[Row]:
    for step in transformations:
        if step["id"] != "filterByValue":
            raise UnsupportedTransformationError(step["id"])
        wanted = [(f["fieldName"], f["config"]["options"]["value"]) for f in step["options"]["filters"]]
        rows = [r for r in rows if any(r.get(name) == value for name, value in wanted)]
    return rows
