"""Place panels on Grafana's 24-column grid, left to right and top to bottom, with sequential ids.

Placement depends only on the order panels are added, so the same profiles give the same ids and
positions every time (stable links, clean diffs of the generated JSON).
"""

from __future__ import annotations

from typing import Any

import attr
from grafanalib import core

from citytelemetry.dashboards.panels import row

GRID_WIDTH = 24


class Layout:
    __slots__ = ("_line_height", "_next_id", "_x", "_y", "panels")

    def __init__(self) -> None:
        self.panels: list[Any] = []
        self._x = self._y = self._line_height = 0
        self._next_id = 1

    def _newline(self) -> None:
        self._y += self._line_height
        self._x = self._line_height = 0

    def _place(self, panel: Any, w: int, h: int) -> None:
        position = core.GridPos(h=h, w=w, x=self._x, y=self._y)
        self.panels.append(attr.evolve(panel, gridPos=position, id=self._next_id))
        self._next_id += 1
        self._x += w
        self._line_height = max(self._line_height, h)

    def row(self, title: str) -> None:
        if self._x:
            self._newline()
        self._place(row(title), GRID_WIDTH, 1)
        self._newline()

    def add(self, panel: Any, w: int = 12, h: int = 8) -> None:
        if not 1 <= w <= GRID_WIDTH:
            raise ValueError(f"panel width {w} outside 1..{GRID_WIDTH}")
        if self._x + w > GRID_WIDTH:
            self._newline()
        self._place(panel, w, h)
