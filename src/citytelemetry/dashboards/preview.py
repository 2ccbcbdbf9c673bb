"""Render each dashboard's panels to a PNG from the same queries Grafana would run (matplotlib).

Not a Grafana replacement: a check that every panel has sensible data, units and levels, usable where
no Grafana is at hand (CI artefacts, a quick look after a deployment). Panels sit where ``gridPos``
puts them; time series draw their threshold steps as dashed lines.
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
COLORS = {"green": "#37872d", "orange": "#ff780a", "red": "#c4162a", "blue": "#1f60c4", "text": "#555555"}


def _color(name: str) -> str:
    return COLORS.get(name, name)


def _lines(ax: Axes, panel: Mapping[str, Any], results: Results) -> None:
    for target, series_list in results:
        for series in series_list:
            times = [row[0] / 1000 for row in series.values]
            for column in series.columns[1:]:
                values = [v if isinstance(v, (int, float)) else None for v in series.column(column)]
                ax.plot(times, [float("nan") if v is None else v for v in values], linewidth=0.8,
                        label=series.display_name(target.get("alias", ""), column)[:30])
    for step in panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])[1:]:
        ax.axhline(step["value"], color=_color(step["color"]), linestyle="--", linewidth=0.7)
    if ax.lines:
        ax.legend(fontsize=5, loc="upper left", ncol=2)
    ax.tick_params(labelsize=5)
    ax.set_xticks([])


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
    text = f"{value * 100:.1f} %" if unit == "percentunit" else f"{value:.4g}"
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
    cells = [[str(r.get(c, ""))[:18] for c in columns] for r in rows[:12]]
    table = ax.table(cellText=cells, colLabels=columns, loc="upper center", fontsize=5)
    table.auto_set_font_size(value=False)
    table.set_fontsize(5)


def _states(ax: Axes, panel: Mapping[str, Any], results: Results) -> None:
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
                ax.barh(y, end - t, left=t, color=_color(color), height=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=5)
    ax.set_xticks([])


def _heatmap(ax: Axes, results: Results) -> None:
    series = sorted((s for _, group in results for s in group), key=lambda s: sorted(s.tags.items()))
    times = sorted({row[0] for s in series for row in s.values})
    index = {t: i for i, t in enumerate(times)}
    grid = [[float("nan")] * len(times) for _ in series]
    for r, s in enumerate(series):
        for row in s.values:
            if isinstance(row[1], (int, float)):
                grid[r][index[row[0]]] = row[1]
    if grid and times:
        image = ax.imshow(grid, aspect="auto", cmap="turbo", interpolation="nearest")
        ax.figure.colorbar(image, ax=ax, fraction=0.03)
    ax.set_yticks(range(len(series)), ["/".join(s.tags.values()) for s in series], fontsize=5)
    ax.set_xticks([])


def draw_panel(ax: Axes, panel: Mapping[str, Any], results: Results) -> None:
    ax.set_title(panel["title"][:70], fontsize=7, loc="left")
    kind = panel["type"]
    if kind == "timeseries":
        _lines(ax, panel, results)
    elif kind == "stat":
        _stat(ax, panel, results)
    elif kind == "bargauge":
        _bars(ax, results)
    elif kind == "table":
        _table(ax, panel, results)
    elif kind == "state-timeline":
        _states(ax, panel, results)
    elif kind == "heatmap":
        _heatmap(ax, results)
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
    figure.suptitle(dashboard["title"], fontsize=11, x=0.01, ha="left")
    interval = auto_interval(time_range)
    for panel in panels:
        g = panel["gridPos"]
        rect = (g["x"] / 24 + 0.004, 1 - (g["y"] + g["h"] + 1) / (height + 2) + 0.004, g["w"] / 24 - 0.008,
                g["h"] / (height + 2) - 0.012)
        if panel["type"] == "row":
            figure.text(rect[0], rect[1], panel["title"], fontsize=9, weight="bold")
            continue
        ax = figure.add_axes(rect)
        try:
            results = run_panel(client, panel, variables=variables, time_range=time_range, interval=interval)
            draw_panel(ax, panel, results)
        except QueryError as exc:
            ax.set_title(panel["title"][:70], fontsize=7, loc="left")
            ax.text(0.02, 0.5, f"query failed: {str(exc)[:80]}", fontsize=5, color="red")
    path = out / f"{dashboard['uid']}.png"
    figure.savefig(path, dpi=80)
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
