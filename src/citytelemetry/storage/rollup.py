"""Computing rollups: the InfluxQL aggregate over the raw data of a window, written back as points.

The statement is ``SELECT min("f"), max("f"), ... FROM <raw> WHERE <window> [AND devices]
GROUP BY time(<window>), *``; each result row becomes one point per aggregate measurement, stamped with
the window start, with the raw series' tags. Writing the same series and timestamp again overwrites the
point, so computing a window twice (a late reading, a restart) leaves exactly the aggregate of the raw
data as it is now: rollups are exact by construction, on any store with InfluxQL and overwrite semantics.
"""

# ruff: noqa: S608 - InfluxQL from schema-checked identifiers (profiles: [a-z0-9_]), quoted

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from citytelemetry.contracts import LineWriter
from citytelemetry.dashboards.influxql import ident, string
from citytelemetry.records import FieldValue
from citytelemetry.sink.line_protocol import NS_PER_MS, format_line
from citytelemetry.storage.query import InfluxQL, Series
from citytelemetry.storage.schema import Aggregate, Kind, MeasurementRollup, rollup_measurement
from citytelemetry.storage.tiers import Tier
from citytelemetry.storage.windows import ALL_DEVICES, COMPACT_ABOVE, Mark

log = logging.getLogger(__name__)
WRITE_BATCH = 5000  # lines per write, as the pipeline's batches
DEVICES_PER_QUERY = COMPACT_ABOVE  # more dirty devices than this in one window: computed for all of them


def source(measurement: str, retention_policy: str | None) -> str:
    return f"{ident(retention_policy)}.{ident(measurement)}" if retention_policy else ident(measurement)


def window_statement(rollup: MeasurementRollup, tier: Tier, start_ms: int, end_ms: int,
                     devices: Sequence[str] = (), *, raw_rp: str | None = None) -> str:
    """The aggregate of raw data in [start, end), per window of ``tier`` and series; all devices if none given."""
    scope = ""
    if devices:
        scope = " AND (" + " OR ".join(f'"device" = {string(d)}' for d in devices) + ")"
    return (f"SELECT {rollup.select_list()} FROM {source(rollup.measurement, raw_rp)} "
            f"WHERE time >= {start_ms}ms AND time < {end_ms}ms{scope} GROUP BY time({tier.window}), * fill(none)")


def _typed(kind: Kind, value: Any) -> FieldValue:
    # JSON says 20 for the float 20.0 and 5 for the mean 5.0: the profile decides the line protocol type.
    if kind is Kind.FLOAT:
        return float(value)
    if kind is Kind.INT:
        return int(value)
    if kind is Kind.BOOL:
        return bool(value)
    return str(value)


def rollup_lines(rollup: MeasurementRollup, series: Iterable[Series]) -> list[bytes]:
    """One point per aggregate measurement per result row; null aggregates (field absent) are left out."""
    columns = rollup.columns()
    lines: list[bytes] = []
    for s in series:
        tags = tuple(sorted((k, v) for k, v in s.tags.items() if v))
        for row in s.values:
            timestamp_ns = int(row[0]) * NS_PER_MS
            points: dict[Aggregate, dict[str, FieldValue]] = defaultdict(dict)
            for (f, aggregate), value in zip(columns, row[1:], strict=True):
                if value is not None:
                    points[aggregate][f.name] = _typed(f.kind_of(aggregate), value)
            lines.extend(format_line(rollup_measurement(rollup.measurement, a), tags, fields, timestamp_ns)
                         for a, fields in points.items() if fields)
    return lines


class Rollups:
    """Computes marked windows (or whole ranges) and writes them to each tier's writer."""

    def __init__(self, schema: Mapping[str, MeasurementRollup], tiers: Sequence[Tier], query: InfluxQL,
                 writers: Mapping[str, LineWriter], *, raw_rp: str | None = None) -> None:
        self._schema = schema
        self._tiers = {t.name: t for t in tiers}
        self._query = query
        self._writers = writers
        self._raw_rp = raw_rp
        self.points_written = 0
        self.windows_computed = 0

    @property
    def tiers(self) -> list[Tier]:
        return list(self._tiers.values())

    @property
    def measurements(self) -> list[str]:
        return sorted(self._schema)

    async def missing_tiers(self) -> list[str]:
        """The tiers whose retention policy the database lacks (SHOW RETENTION POLICIES, read access)."""
        series = await self._query.run("SHOW RETENTION POLICIES")
        present = {row[0] for s in series for row in s.values}
        return [name for name in self._tiers if name not in present]

    async def aclose(self) -> None:
        await self._query.aclose()
        for writer in self._writers.values():
            await writer.aclose()

    async def compute(self, marks: Iterable[Mark]) -> int:
        """Compute every marked window; returns the points written. Raises QueryError / WriteError."""
        groups: dict[tuple[str, str, int], set[str]] = defaultdict(set)
        for mark in marks:
            if mark.tier in self._tiers and mark.measurement in self._schema:
                groups[(mark.tier, mark.measurement, mark.start_ms)].add(mark.device)
        written = 0
        for (tier_name, measurement, start_ms), devices in sorted(groups.items()):
            tier = self._tiers[tier_name]
            chosen = () if ALL_DEVICES in devices or len(devices) > DEVICES_PER_QUERY else tuple(sorted(devices))
            written += await self._range(tier, self._schema[measurement], start_ms, start_ms + tier.window_ms, chosen)
            self.windows_computed += 1
        return written

    async def backfill(self, tier: Tier, measurement: str, start_ms: int, end_ms: int,
                       step_ms: int = 86_400_000) -> int:
        """Every window of [start, end) for every device, ``step_ms`` of raw data per query."""
        rollup = self._schema[measurement]
        window = tier.window_ms
        step = max(window, step_ms - step_ms % window)
        first, last = start_ms - start_ms % window, end_ms + (-end_ms) % window  # whole windows
        written = 0
        for lower in range(first, last, step):
            written += await self._range(tier, rollup, lower, min(lower + step, last), ())
        return written

    async def _range(self, tier: Tier, rollup: MeasurementRollup, start_ms: int, end_ms: int,
                     devices: Sequence[str]) -> int:
        statement = window_statement(rollup, tier, start_ms, end_ms, devices, raw_rp=self._raw_rp)
        lines = rollup_lines(rollup, await self._query.run(statement))
        writer = self._writers[tier.name]
        for i in range(0, len(lines), WRITE_BATCH):
            await writer.write(lines[i:i + WRITE_BATCH])
        self.points_written += len(lines)
        return len(lines)
