"""Render each dashboard's panels to a PNG from the same queries Grafana would run (matplotlib).

Not a Grafana replacement: a check that every panel has sensible data, units and levels, usable where
no Grafana is at hand (CI artefacts, a quick look after a deployment). Panels sit where ``gridPos``
puts them, each with its title above its own plot area (row headings in their own band); time series,
state timelines and heatmaps share a UTC time axis, the unit labels the value axis, threshold steps
are dashed lines in their colour, a series of a few points is drawn with markers (a single point is
visible), empty table cells stay empty, and a heatmap labels at most ``MAX_ROW_LABELS`` of its rows.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytelemetry.dashboards.macros import TimeRange, auto_interval
from citytelemetry.dashboards.results import InfluxQuery, QueryError, Series, last_values, run_panel
from citytelemetry.dashboards.transforms import filter_rows, reduce_fields

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Results = list[tuple[dict[str, Any], list[Series]]]
ROW_INCH = 0.32
MAX_ROW_LABELS = 16  # heatmap / state rows labelled; the others are counted in the axis label
FEW_POINTS = 5  # series this short are drawn with markers
COLORS = {"green": "#37872d", "orange": "#ff780a", "red": "#c4162a", "blue": "#1f60c4", "text": "#555555"}


def _color(name: str) -> str:
    return COLORS.get(name, name)


def _when(ms: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _bounds(time_range: TimeRange) -> tuple[float, float]:
    if time_range.start_ms is not None and time_range.end_ms is not None:
        return float(time_range.start_ms), float(time_range.end_ms)
    import time

    end = time.time() * 1000
    return end - time_range.seconds * 1000, end


def _time_axis(ax: Axes, time_range: TimeRange) -> None:
    import matplotlib.dates as mdates

    start_ms, end_ms = _bounds(time_range)
    ax.set_xlim(_when(start_ms), _when(end_ms))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=6))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=mdates.UTC))  # type: ignore[no-untyped-call]
    ax.tick_params(axis="x", labelsize=5, pad=1)


def _unit(panel: Mapping[str, Any]) -> str:
    """The unit as people write it: Grafana's custom ``suffix:Nm³/h`` shown as ``Nm³/h``, ``none`` as nothing."""
    unit = str(panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "") or "")
    return "" if unit == "none" else unit.removeprefix("suffix:").strip()


def _lines(ax: Axes, panel: Mapping[str, Any], results: Results, time_range: TimeRange) -> None:
    for target, series_list in results:
        for series in series_list:
            times = [_when(row[0]) for row in series.values]
            for column in series.columns[1:]:
                values = [v if isinstance(v, (int, float)) else None for v in series.column(column)]
                few = sum(v is not None for v in values) <= FEW_POINTS
                ax.plot(times, [float("nan") if v is None else v for v in values], linewidth=0.8,
                        marker="o" if few else None, markersize=2.5,
                        label=series.display_name(target.get("alias", ""), column)[:30])
    for step in panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])[1:]:
        ax.axhline(step["value"], color=_color(step["color"]), linestyle="--", linewidth=0.7)
    if ax.lines:
        ax.legend(fontsize=5, loc="upper left", ncol=2)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=8, color=COLORS["text"],
                transform=ax.transAxes)
    ax.tick_params(labelsize=5)
    ax.set_ylabel(_unit(panel), fontsize=5, labelpad=1)
    _time_axis(ax, time_range)


def _stat(ax: Axes, panel: Mapping[str, Any], results: Results) -> None:
    values = last_values(results)
    if panel.get("transformations"):
        values = reduce_fields(panel["transformations"], values)
    numbers = [v for v in values.values() if v is not None]
    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    if not numbers:
        ax.text(0.5, 0.4, "no data", ha="center", fontsize=12)
        return
    value = numbers[-1]
    color = "green"
    for step in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]:
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    text = f"{value * 100:.1f} %" if unit == "percentunit" else f"{value:.4g} {'' if unit == 'none' else unit}"
    ax.set_facecolor(_color(color))
    ax.text(0.5, 0.35, text, ha="center", fontsize=16, color="white", transform=ax.transAxes)


def _bars(ax: Axes, results: Results) -> None:
    values = {k: v for k, v in last_values(results).items() if v is not None}
    names = list(values)
    ax.barh(range(len(names)), list(values.values()), color="#1f60c4")
    for y, (name, value) in enumerate(values.items()):
        ax.text(0, y, f" {name[:40]}  {value:.3g}", va="center", fontsize=5, color="black")
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.tick_params(labelsize=5)


def _rows(results: Results) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for _, series_list in results:
        for series in series_list:
            rows.extend({**series.tags, **dict(zip(series.columns, row, strict=True))} for row in series.values)
    return rows


def _table(ax: Axes, panel: Mapping[str, Any], results: Results) -> None:
    rows = filter_rows(panel.get("transformations", []), _rows(results))
    if not rows:
        ax.text(0.5, 0.5, "(no rows)", ha="center", fontsize=8)
        return
    columns = [c for c in rows[0] if c != "time"][:7]
    cells = [["" if r.get(c) is None else str(r.get(c))[:18] for c in columns] for r in rows[:12]]
    table = ax.table(cellText=cells, colLabels=columns, loc="upper center", fontsize=5)
    table.auto_set_font_size(value=False)
    table.set_fontsize(5)


def _row_labels(ax: Axes, labels: Sequence[str]) -> None:
    """Every row labelled while they fit, else every n-th, the count on the axis."""
    step = max(1, -(-len(labels) // MAX_ROW_LABELS))
    ax.set_yticks(range(0, len(labels), step), [labels[i][:20] for i in range(0, len(labels), step)], fontsize=5)
    if step > 1:
        ax.set_ylabel(f"{len(labels)} rows, every {step}th labelled", fontsize=5, labelpad=1)


def _states(ax: Axes, panel: Mapping[str, Any], results: Results, time_range: TimeRange) -> None:
    options: dict[str, Any] = {}
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        options.update(mapping.get("options", {}))
    labels: list[str] = []
    for target, series_list in results:
        for series in series_list[:20]:
            y = len(labels)
            labels.append(series.display_name(target.get("alias", ""), series.columns[1])[:20])
            times = [row[0] for row in series.values]
            for i, (t, value) in enumerate(zip(times, series.column(series.columns[1]), strict=True)):
                end = times[i + 1] if i + 1 < len(times) else t + 60_000
                color = options.get(str(value).lower(), {}).get("color", "grey")
                ax.barh(y, (end - t) / 86_400_000, left=_when(t), color=_color(color), height=0.8)
    _row_labels(ax, labels)
    ax.invert_yaxis()
    _time_axis(ax, time_range)


def _heatmap(ax: Axes, panel: Mapping[str, Any], results: Results, time_range: TimeRange) -> None:
    import matplotlib.dates as mdates

    series = sorted((s for _, group in results for s in group), key=lambda s: sorted(s.tags.items()))
    times = sorted({row[0] for s in series for row in s.values})
    index = {t: i for i, t in enumerate(times)}
    grid = [[float("nan")] * len(times) for _ in series]
    for r, s in enumerate(series):
        for row in s.values:
            if isinstance(row[1], (int, float)):
                grid[r][index[row[0]]] = row[1]
    if not (grid and times):
        ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=8, color=COLORS["text"],
                transform=ax.transAxes)
        return
    step = (times[1] - times[0]) if len(times) > 1 else 60_000
    left, right = (mdates.date2num(_when(t)) for t in (times[0], times[-1] + step))  # type: ignore[no-untyped-call]
    image = ax.imshow(grid, aspect="auto", cmap="turbo", interpolation="nearest",
                      extent=(left, right, len(series) - 0.5, -0.5))
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    bar.ax.tick_params(labelsize=5)
    bar.set_label(_unit(panel), fontsize=5)
    _row_labels(ax, ["/".join(s.tags.values()) for s in series])
    _time_axis(ax, time_range)


def draw_panel(ax: Axes, panel: Mapping[str, Any], results: Results, time_range: TimeRange) -> None:
    ax.set_title(panel["title"][:90], fontsize=6.5, loc="left", pad=2)
    kind = panel["type"]
    if kind == "timeseries":
        _lines(ax, panel, results, time_range)
    elif kind == "stat":
        _stat(ax, panel, results)
    elif kind == "bargauge":
        _bars(ax, results)
    elif kind == "table":
        _table(ax, panel, results)
    elif kind == "state-timeline":
        _states(ax, panel, results, time_range)
    elif kind == "heatmap":
        _heatmap(ax, panel, results, time_range)
    if kind in ("stat", "table"):
        ax.set_xticks([])
        ax.set_yticks([])


def render_dashboard(dashboard: Mapping[str, Any], client: InfluxQuery, out: Path, *,
                     variables: Mapping[str, Sequence[str] | None], time_range: TimeRange) -> Path:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    panels = dashboard["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = plt.figure(figsize=(16, (height + 2) * ROW_INCH))
    unit_h = 1 / (height + 2)  # one grid row, in figure fractions
    figure.text(0.01, 1 - 0.5 * unit_h, dashboard["title"], fontsize=11, va="center")  # its own band on top
    interval = auto_interval(time_range)
    for panel in panels:
        g = panel["gridPos"]
        top = 1 - (g["y"] + 1) * unit_h  # +1: the dashboard title's band
        if panel["type"] == "row":  # its own band, above the panels that follow it
            figure.text(g["x"] / 24 + 0.004, top - 0.55 * unit_h, panel["title"], fontsize=9, weight="bold",
                        va="center")
            continue
        # Inside the panel's cell: the y labels on the left (0.035 of the width), the title (0.8 row) on top,
        # the time axis (0.7 row) at the bottom, a heatmap's colour bar labels on the right (0.03).
        left = g["x"] / 24 + 0.035
        bottom = top - g["h"] * unit_h + 0.7 * unit_h
        right = 0.065 if panel["type"] == "heatmap" else 0.042
        rect = (left, bottom, g["w"] / 24 - right, (g["h"] - 1.5) * unit_h)
        ax = figure.add_axes(rect)
        try:
            results = run_panel(client, panel, variables=variables, time_range=time_range, interval=interval)
            draw_panel(ax, panel, results, time_range)
        except QueryError as exc:
            ax.set_title(panel["title"][:90], fontsize=6.5, loc="left", pad=2)
            ax.text(0.02, 0.5, f"query failed: {str(exc)[:80]}", fontsize=5, color="red")
    path = out / f"{dashboard['uid']}.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def render_all(dashboards: Mapping[str, Mapping[str, Any]], client: InfluxQuery, out: Path, *,
               time_range: TimeRange, site: Sequence[str] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for dashboard in dashboards.values():
        variables: dict[str, Sequence[str] | None] = {v["name"]: None for v in dashboard["templating"]["list"]}
        if site is not None:
            variables["site"] = site
        paths.append(render_dashboard(dashboard, client, out, variables=variables, time_range=time_range))
    items = "\n".join(f'<h2>{html.escape(p.stem)}</h2><img src="{html.escape(p.name)}" width="100%">' for p in paths)
    index = out / "index.html"
    index.write_text(f"<!doctype html><meta charset='utf-8'><title>citytelemetry dashboards</title>\n{items}\n",
                     encoding="utf-8")
    return [*paths, index]
