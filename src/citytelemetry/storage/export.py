"""``citytelemetry export``: a time range of raw data or of a rollup tier, streamed to CSV or Parquet.

The range is read in time chunks (one InfluxQL statement each, answered chunked), so memory is bounded by
one chunk whatever the range. A rollup chunk reads the five aggregate measurements and joins them on
(time, series). Columns: ``time`` (UTC), the series' tags, then the fields (a rollup: ``field_min``, ...);
units go into the header (CSV: ``temperature [°C]``; Parquet: the field's ``unit`` metadata too).
"""

# ruff: noqa: S608 - InfluxQL from schema-checked identifiers, quoted

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from citytelemetry.dashboards.influxql import ident, string
from citytelemetry.profiles import Catalog
from citytelemetry.storage.query import InfluxQL
from citytelemetry.storage.rollup import source
from citytelemetry.storage.schema import Aggregate, Kind, MeasurementRollup, rollup_measurement

RAW = "raw"


class ExportError(Exception):
    """The selection or the output is not possible (no such device, no pyarrow for Parquet, ...)."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str  # in the output
    key: str  # the field or tag it is read from
    kind: Kind | None  # None: a tag
    unit: str = ""
    aggregate: Aggregate | None = None

    @property
    def header(self) -> str:
        return f"{self.name} [{self.unit}]" if self.unit else self.name


@dataclass(frozen=True, slots=True)
class Selection:
    measurement: str
    tags: tuple[str, ...]  # tag keys, device first
    devices: tuple[str, ...]  # empty: every device
    start_ms: int
    end_ms: int


def selections(catalog: Catalog, *, system: str | None, device: str | None, measurement: str | None,
               start_ms: int, end_ms: int) -> list[Selection]:
    if end_ms <= start_ms:
        raise ExportError("--to must be after --from")
    devices = list(catalog.devices.values())
    if device is not None:
        if device not in catalog.devices:
            raise ExportError(f"no device {device!r} in the inventory")
        devices = [catalog.devices[device]]
    if system is not None:
        devices = [d for d in devices if d.system.value == system]
    if measurement is not None:
        if measurement not in catalog.profiles:
            known = ", ".join(sorted(catalog.profiles))
            raise ExportError(f"no device type (measurement) {measurement!r}; types: {known}")
        devices = [d for d in devices if d.profile.type == measurement]
    if not devices:
        raise ExportError("the selection names no device")
    out = []
    for name in sorted({d.profile.type for d in devices}):
        of_type = [d for d in devices if d.profile.type == name]
        keys = sorted({k for d in of_type for k, _ in d.tags} - {"device"})
        chosen = (device,) if device is not None else ()
        out.append(Selection(name, ("device", *keys), chosen, start_ms, end_ms))
    return out


def columns(rollup: MeasurementRollup, selection: Selection, tier: str) -> list[Column]:
    tags = [Column(t, t, None) for t in selection.tags]
    if tier == RAW:
        return [*tags, *(Column(f.name, f.name, f.kind, f.unit) for f in rollup.fields)]
    return [*tags, *(Column(f"{f.name}_{a.value}", f.name, f.kind_of(a), "" if a is Aggregate.COUNT else f.unit, a)
                     for f, a in rollup.columns())]


def _where(selection: Selection, start_ms: int, end_ms: int) -> str:
    scope = ""
    if selection.devices:
        scope = " AND (" + " OR ".join(f'"device" = {string(d)}' for d in selection.devices) + ")"
    return f"WHERE time >= {start_ms}ms AND time < {end_ms}ms{scope}"


Row = list[Any]  # time in ms, then the values of ``columns`` (None where absent)


async def _raw_rows(query: InfluxQL, selection: Selection, cols: Sequence[Column], rp: str | None,
                    start_ms: int, end_ms: int) -> AsyncIterator[list[Row]]:
    keys = ", ".join(ident(c.key) for c in cols)
    statement = f"SELECT {keys} FROM {source(selection.measurement, rp)} {_where(selection, start_ms, end_ms)}"
    async for series in query.stream(statement):
        yield series.values


async def _rollup_rows(query: InfluxQL, selection: Selection, cols: Sequence[Column], tier: str,
                       start_ms: int, end_ms: int) -> AsyncIterator[list[Row]]:
    tag_cols = [c for c in cols if c.kind is None]
    joined: dict[tuple[Any, ...], Row] = {}
    for aggregate in Aggregate:
        wanted = [(i, c) for i, c in enumerate(cols) if c.aggregate is aggregate]
        if not wanted:
            continue
        keys = ", ".join(ident(c.key) for c in (*tag_cols, *(c for _, c in wanted)))
        measurement = rollup_measurement(selection.measurement, aggregate)
        statement = f"SELECT {keys} FROM {source(measurement, tier)} {_where(selection, start_ms, end_ms)}"
        async for series in query.stream(statement):
            for values in series.values:
                key = (values[0], *values[1:1 + len(tag_cols)])
                row = joined.get(key)
                if row is None:
                    row = joined[key] = [*key, *([None] * (len(cols) - len(tag_cols)))]
                for (i, _), value in zip(wanted, values[1 + len(tag_cols):], strict=True):
                    row[1 + i] = value
    yield [joined[k] for k in sorted(joined, key=lambda k: (k[0], *(str(v) for v in k[1:])))]


class RowSink(Protocol):
    def write(self, rows: list[Row]) -> None: ...

    def close(self) -> None: ...


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CsvSink:
    def __init__(self, out: TextIO, cols: Sequence[Column]) -> None:
        self._writer = csv.writer(out, lineterminator="\n")
        self._out = out
        self._kinds = [c.kind for c in cols]
        self._writer.writerow(["time", *(c.header for c in cols)])

    def write(self, rows: list[Row]) -> None:
        kinds = self._kinds
        self._writer.writerows([_iso(r[0]), *(_csv_value(v, k) for v, k in zip(r[1:], kinds, strict=True))]
                               for r in rows)

    def close(self) -> None:
        self._out.flush()


def _csv_value(value: Any, kind: Kind | None) -> Any:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is Kind.FLOAT:
        return repr(float(value))  # InfluxDB's JSON says 20 for 20.0; a float column stays a float
    return value


class ParquetSink:
    """One row group per chunk; units in each field's metadata and in the schema's ``units``."""

    def __init__(self, path: Path, cols: Sequence[Column]) -> None:
        try:
            # optional (pip install 'citytelemetry[parquet]'): imported only when asked for
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ExportError("--format parquet needs pyarrow: pip install 'citytelemetry[parquet]'") from exc
        types = {None: pa.string(), Kind.FLOAT: pa.float64(), Kind.INT: pa.int64(), Kind.BOOL: pa.bool_(),
                 Kind.STRING: pa.string()}
        fields = [pa.field("time", pa.timestamp("ms", tz="UTC"), nullable=False)]
        fields += [pa.field(c.name, types[c.kind], metadata={"unit": c.unit} if c.unit else None) for c in cols]
        units = ",".join(f"{c.name}={c.unit}" for c in cols if c.unit)
        self._pa = pa
        self._schema = pa.schema(fields, metadata={"units": units})
        self._writer = pq.ParquetWriter(str(path), self._schema)

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        arrays = [self._pa.array([r[i] for r in rows], type=f.type) for i, f in enumerate(self._schema)]
        self._writer.write_table(self._pa.Table.from_arrays(arrays, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


Progress = Callable[[str, int, int, int], None]  # (measurement, rows so far, ms done, ms in all)


async def export(query: InfluxQL, selection: Selection, rollup: MeasurementRollup, sink_for: Callable[
        [Sequence[Column]], RowSink], *, tier: str = RAW, raw_rp: str | None = None, chunk_ms: int = 6 * 3_600_000,
                 progress: Progress | None = None) -> int:
    """Stream one measurement's selection, ``chunk_ms`` of time per statement; returns the rows written."""
    cols = columns(rollup, selection, tier)
    sink = sink_for(cols)
    rows = 0
    try:
        for lower in range(selection.start_ms, selection.end_ms, chunk_ms):
            upper = min(lower + chunk_ms, selection.end_ms)
            chunks = (_raw_rows(query, selection, cols, raw_rp, lower, upper) if tier == RAW
                      else _rollup_rows(query, selection, cols, tier, lower, upper))
            async for chunk in chunks:
                sink.write(chunk)
                rows += len(chunk)
            if progress is not None:
                progress(selection.measurement, rows, upper - selection.start_ms, selection.end_ms - selection.start_ms)
    finally:
        sink.close()
    return rows
