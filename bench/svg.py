"""A line chart as a standalone SVG file: the benchmarks' plots, with no plotting library.

    line_chart(path, title, x_label, y_label, series={"name": [(x, y), ...]}, hlines={"label": y})

Axes get 5 evenly spaced ticks over the data's range; each series is a polyline in its
own colour with a legend entry; `hlines` draws dashed reference lines (a target, a
baseline) and `markers` single labelled points (a baseline that is one point). Browsers and GitHub render the file as an image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
W, H, LEFT, RIGHT, TOP, BOTTOM = 820, 440, 70, 270, 40, 55


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def line_chart(path: str | Path, title: str, x_label: str, y_label: str,
               series: Mapping[str, Sequence[tuple[float, float]]],
               hlines: Mapping[str, float] | None = None,
               markers: Mapping[str, tuple[float, float]] | None = None,
               y_min: float | None = None, log_y: bool = False) -> Path:
    """`y_min` pins the bottom of the y axis (e.g. 0) instead of the lowest value;
    `log_y` spaces the y axis by powers of ten (values must be positive)."""
    hlines, markers = dict(hlines or {}), dict(markers or {})
    xs = [x for pts in series.values() for x, _ in pts] + [x for x, _ in markers.values()]
    ys = [y for pts in series.values() for _, y in pts] + list(hlines.values()) + [y for _, y in markers.values()]
    if not xs:
        raise ValueError("a chart needs at least one point")
    if log_y and min(ys) <= 0:
        raise ValueError("a log-scale axis needs positive values")
    x0, x1 = min(xs), max(xs)
    y0, y1 = (min(ys) if y_min is None else y_min), max(ys)
    if log_y:  # whole decades around the data
        y0, y1 = 10.0 ** math.floor(math.log10(y0)), 10.0 ** math.ceil(math.log10(y1))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 * 10 if log_y else y0 + 1)
    fy = math.log10 if log_y else (lambda v: v)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    sx = lambda x: LEFT + (x - x0) / (x1 - x0) * pw  # noqa: E731
    sy = lambda y: TOP + ph - (fy(y) - fy(y0)) / (fy(y1) - fy(y0)) * ph  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="12"><rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>']
    for t in _ticks(x0, x1):
        out.append(f'<line x1="{sx(t):.1f}" y1="{TOP + ph}" x2="{sx(t):.1f}" y2="{TOP + ph + 5}" stroke="#444"/>'
                   f'<text x="{sx(t):.1f}" y="{TOP + ph + 18}" text-anchor="middle">{_num(t)}</text>')
    y_ticks = ([10.0 ** k for k in range(round(math.log10(y0)), round(math.log10(y1)) + 1)] if log_y
               else _ticks(y0, y1))
    for t in y_ticks:
        out.append(f'<line x1="{LEFT - 5}" y1="{sy(t):.1f}" x2="{LEFT}" y2="{sy(t):.1f}" stroke="#444"/>'
                   f'<text x="{LEFT - 8}" y="{sy(t) + 4:.1f}" text-anchor="end">{_num(t)}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 12}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text x="16" y="{TOP + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {TOP + ph / 2})">{escape(y_label)}</text>')
    legend_y = TOP + 10
    for i, (name, y) in enumerate(hlines.items()):
        out.append(f'<line x1="{LEFT}" y1="{sy(y):.1f}" x2="{LEFT + pw}" y2="{sy(y):.1f}" stroke="#777" '
                   f'stroke-dasharray="{4 + 2 * i},4"/>')
        out.append(f'<text x="{LEFT + pw + 10}" y="{legend_y + 4}" fill="#555">- - {escape(name)}</text>')
        legend_y += 18
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        if len(pts) <= 20:  # few measurements: show where they are
            out.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>' for x, y in pts)
        out.append(f'<line x1="{LEFT + pw + 10}" y1="{legend_y}" x2="{LEFT + pw + 30}" y2="{legend_y}" '
                   f'stroke="{colour}" stroke-width="3"/><text x="{LEFT + pw + 35}" y="{legend_y + 4}">'
                   f'{escape(name)}</text>')
        legend_y += 18
    for name, (x, y) in markers.items():
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="black"/>'
                   f'<text x="{sx(x) - 8:.1f}" y="{sy(y) + 18:.1f}" text-anchor="end">{escape(name)}</text>')
    out.append("</svg>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    return path
