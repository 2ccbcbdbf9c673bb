"""One row of the results table, and the table itself."""

from __future__ import annotations

from dataclasses import dataclass, field

BEFORE = "code of"  # in a --baseline row's measurement: "…, code of 7c652b0 (its src, profiles and rules)"


@dataclass(slots=True)
class Row:
    part: str  # a..f
    workload: str  # W1, W2 or "-"
    what: str
    msgs_per_s: float | None = None
    points_per_s: float | None = None
    details: str = ""
    figures: dict[str, float | dict[str, float]] = field(default_factory=dict)  # machine-readable (tests, ratios)

    @property
    def before(self) -> bool:
        """Measured with the pipeline of another git ref (``--baseline``)."""
        return f", {BEFORE} " in self.what


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(rows: list[Row]) -> str:
    head = "| part | load | measurement | msg/s | points/s | details |\n|---|---|---|---:|---:|---|\n"
    return head + "".join(f"| {r.part} | {r.workload} | {r.what} | {_num(r.msgs_per_s)} | {_num(r.points_per_s)} "
                          f"| {r.details} |\n" for r in rows)


def find(rows: list[Row], part: str, workload: str, what: str = "", *, synthetic: bool = False,
         before: bool = False) -> Row | None:
    for row in rows:
        if (row.part == part and row.workload == workload and what in row.what
                and ("synthetic" in row.what) == synthetic and row.before == before):
            return row
    return None


def pure_now(rows: list[Row], workload: str) -> Row | None:
    """Today's pure-Python (c) row: the pure variant beside a compiled default, else the default itself
    when the build is pure (then no variant is run and the default's measurement does not say so)."""
    return find(rows, "c", workload, "pure Python") or next(
        (r for r in rows if r.part == "c" and r.workload == workload and not r.before
         and r.what == "citytelemetry run, 1 process (drain backlog)"), None)


def best_paho(rows: list[Row], workload: str) -> Row | None:
    """The faster of paho over MQTT 5 and over MQTT 3.1.1: the bare-client reference."""
    found = [r for r in rows if r.part == "a" and r.workload == workload and r.what.startswith("paho")
             and r.points_per_s]
    return max(found, key=lambda r: r.points_per_s or 0.0, default=None)


def ratios(rows: list[Row]) -> list[str]:
    """(c)/(a), (c)/(b), (d)/(c), the two MQTT sources, compiled / pure, the synthetic row and today's code
    against a --baseline ref (both pure Python), in points/s, per workload, where both sides were measured
    in this run."""
    out = []
    for w in ("W1", "W2"):
        c = find(rows, "c", w, "1 process (drain backlog)")
        paho = best_paho(rows, w)
        paho_label = "bare paho subscriber, the faster of MQTT 5 / 3.1.1" + (
            f" ({paho.what.split(' bare')[0]})" if paho else "")
        pairs = [(f"(c)/(a) pipeline / {paho_label}", c, paho),
                 ("(c)/(a) pipeline / mosquitto_sub", c, find(rows, "a", w, "mosquitto_sub")),
                 ("(c)/(b) pipeline / raw InfluxDB, 1 writer", c, find(rows, "b", w, "1 writer")),
                 ("(c)/(b) pipeline / raw InfluxDB, 2 writers", c, find(rows, "b", w, "2 writers")),
                 (f"(d)/(c) {_members(find(rows, 'd', w))} / one", find(rows, "d", w), c),
                 ("(c) compiled hot path / pure Python", c, find(rows, "c", w, "pure Python")),
                 ("(c) district / synthetic bench_sensor", c, find(rows, "c", w, synthetic=True))]
        before, ref = find(rows, "c", w, before=True), ""
        if before is not None:
            ref = before.what.split(f", {BEFORE} ")[1].split(" (")[0]
            pairs.append((f"(c) now / before ({ref}), both pure Python", pure_now(rows, w), before))
        for label, num, den in pairs:
            if num and den and num.points_per_s and den.points_per_s:
                out.append(f"{w} {label}: {num.points_per_s / den.points_per_s:.2f}")
        cpu_now, cpu_before = _figure(pure_now(rows, w), "cpu_s_per_100k"), _figure(before, "cpu_s_per_100k")
        if before is not None and cpu_now and cpu_before:  # CPU is not quantised by the drain's poll interval
            out.append(f"{w} (c) CPU per point now / before ({ref}), both pure Python: {cpu_now / cpu_before:.2f} "
                       f"({cpu_now * 10:.1f} / {cpu_before * 10:.1f} µs)")
    return out


def _members(row: Row | None) -> str:
    """Who ran a (d) row, e.g. 3 partitioned members, from its measurement."""
    if row is None:
        return "members"
    return row.what.removeprefix("citytelemetry run, ").split(" (")[0]


def _figure(row: Row | None, key: str) -> float | None:
    value = row.figures.get(key) if row else None
    return float(value) if isinstance(value, int | float) else None


def targets(rows: list[Row]) -> list[str]:
    """Issue 15's targets against this run's rows: "met", "NOT met" or "not measured", with the figure."""
    out: list[str] = []

    def check(label: str, value: float | None, limit: float, *, at_least: bool, unit: str = "") -> None:
        if value is None:
            out.append(f"{label}: not measured")
            return
        ok = value >= limit if at_least else value <= limit
        out.append(f"{label}: {value:,.2f}{unit} ({'>=' if at_least else '<='} {limit:g}{unit}) "
                   f"{'met' if ok else 'NOT met'}")

    def ratio(num: Row | None, den: Row | None) -> float | None:
        if num and den and num.points_per_s and den.points_per_s:
            return num.points_per_s / den.points_per_s
        return None

    c1, c2 = find(rows, "c", "W1", "1 process (drain backlog)"), find(rows, "c", "W2", "1 process (drain backlog)")
    check("W1 pipeline / bare paho (faster protocol)", ratio(c1, best_paho(rows, "W1")), 1.5, at_least=True, unit="x")
    check("W1 pipeline / mosquitto_sub", ratio(c1, find(rows, "a", "W1", "mosquitto_sub")), 0.6, at_least=True,
          unit="x")
    check("W2 pipeline / raw InfluxDB 1 writer", ratio(c2, find(rows, "b", "W2", "1 writer")), 0.8, at_least=True,
          unit="x")
    cpu = _figure(c1, "cpu_s_per_100k")
    check("W1 CPU per reading end to end", None if cpu is None else cpu * 10, 20, at_least=False, unit=" µs")
    drains = [r for r in rows if r.part == "d" or r.what == "citytelemetry run, 1 process (drain backlog)"]
    pauses = [v for r in drains if (v := _figure(r, "gc_longest_ms")) is not None]
    check("longest GC pause during a drain (c default, d)", max(pauses, default=None), 20, at_least=False, unit=" ms")
    default = "citytelemetry run, 1 process (drain backlog)"
    shipped = [r for r in rows if r.part in {"d", "e", "f", "g"} or r.what == default]
    rss = [v for r in shipped if (v := _figure(r, "peak_rss_mib")) is not None]
    check("peak RSS (MiB, the shipped default's rows)", max(rss, default=None), 250 / 1.048576, at_least=False,
          unit=" MiB")
    e5 = next((r for r in rows if r.part == "e" and "5000" in r.what), None)
    check("p99 publish -> queryable at 5,000 msg/s", _figure(e5, "p99_ms"), 500, at_least=False, unit=" ms")
    lost = [_figure(r, "lost") or 0.0 for r in rows if r.part in {"c", "d"} and not r.before]
    short = [(_figure(r, "expected") or 0.0) - (_figure(r, "landed") or 0.0) for r in rows if r.part in {"e", "f", "g"}]
    check("messages lost (c, d lost; e, f, g expected - landed)", sum(lost) + sum(short) if rows else None, 0,
          at_least=False)
    return out
