"""One row of the results table, and the table itself."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Row:
    part: str  # a..f
    workload: str  # W1, W2 or "-"
    what: str
    msgs_per_s: float | None = None
    points_per_s: float | None = None
    details: str = ""
    figures: dict[str, float | dict[str, float]] = field(default_factory=dict)  # machine-readable (tests, ratios)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(rows: list[Row]) -> str:
    head = "| part | load | measurement | msg/s | points/s | details |\n|---|---|---|---:|---:|---|\n"
    return head + "".join(f"| {r.part} | {r.workload} | {r.what} | {_num(r.msgs_per_s)} | {_num(r.points_per_s)} "
                          f"| {r.details} |\n" for r in rows)


def find(rows: list[Row], part: str, workload: str, what: str = "") -> Row | None:
    for row in rows:
        if row.part == part and row.workload == workload and what in row.what:
            return row
    return None


def ratios(rows: list[Row]) -> list[str]:
    """(c)/(a), (c)/(b), (d)/(c), the two MQTT sources and compiled / pure, in points/s, per workload,
    where both sides were measured."""
    out = []
    for w in ("W1", "W2"):
        c = find(rows, "c", w)
        pairs = [("(c)/(a) pipeline / bare paho subscriber", c, find(rows, "a", w, "paho")),
                 ("(c)/(a) pipeline / mosquitto_sub", c, find(rows, "a", w, "mosquitto_sub")),
                 ("(c)/(b) pipeline / raw InfluxDB, 1 writer", c, find(rows, "b", w, "1 writer")),
                 ("(c)/(b) pipeline / raw InfluxDB, 2 writers", c, find(rows, "b", w, "2 writers")),
                 ("(d)/(c) two pipelines / one", find(rows, "d", w), c),
                 ("(c) default mqtt5 source / aiomqtt source", c, find(rows, "c", w, "mqtt.client = aiomqtt")),
                 ("(c) compiled hot path / pure Python", c, find(rows, "c", w, "pure Python"))]
        for label, num, den in pairs:
            if num and den and num.points_per_s and den.points_per_s:
                out.append(f"{w} {label}: {num.points_per_s / den.points_per_s:.2f}")
    return out
