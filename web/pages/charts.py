"""Small line charts for /admin, drawn server-side as SVG polylines (no JavaScript)."""

from __future__ import annotations

import math
from dataclasses import dataclass

WIDTH, HEIGHT = 300, 80


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    css_class: str
    points: str  # the polyline's "x,y x,y ..." in the chart's viewBox
    last: float | None


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    unit: str
    top: float  # the value at the top edge
    span_seconds: float
    lines: list[Line]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is >= value (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def line_chart(title: str, unit: str, series: list[tuple[str, str, list[tuple[float, float]]]], now: float,
               span_seconds: float, top: float | None = None) -> Chart:
    """series: (name, css class, [(monotonic time, value)]); time runs right to left up to now."""
    top = top or nice_ceiling(max((v for _, _, points in series for _, v in points), default=0.0))
    lines = []
    for name, css_class, points in series:
        xy = [(WIDTH * (1 - (now - t) / span_seconds), HEIGHT * (1 - min(v, top) / top))
              for t, v in points if now - t <= span_seconds]
        lines.append(Line(name, css_class, " ".join(f"{x:.1f},{y:.1f}" for x, y in xy),
                          points[-1][1] if points else None))
    return Chart(title, unit, top, span_seconds, lines)
