"""Server-rendered SVG charts: a bar or line series becomes an accessible SVG string.

No JavaScript and no build step: the dashboard includes the markup as it is. Each chart is
an ``<svg role="img">`` named by its ``<title>`` and described by its ``<desc>``, followed by
the same numbers as a table folded in ``<details>``, so a screen reader, a text browser and
a person who wants the exact figure all get them. Colours come from CSS variables
(``--chart-1`` ... ``--chart-4``) with fallbacks readable on light and dark backgrounds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 32
PALETTE = ("#3b7ddd", "#2e9e5b", "#d9822b", "#c4403a")
DASHES = ("", "6 3", "2 3", "8 3 2 3")


@dataclass(frozen=True)
class Series:
    """One named row of values, one per label; ``None`` is a gap (no data), not zero."""

    name: str
    values: Sequence[float | None]


def bar_chart(
    chart_id: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    unit: str = "",
) -> Markup:
    """Stacked bars, one per label, one segment per series (e.g. jobs per hour by outcome)."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    step = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    parts = []
    for i in range(len(labels)):
        base = 0.0
        for n, s in enumerate(series):
            value = s.values[i] or 0
            if value <= 0:
                continue
            y0, y1 = _y(base, top), _y(base + value, top)
            parts.append(
                f'<rect x="{LEFT + i * step + step * 0.15:.1f}" y="{y1:.1f}" '
                f'width="{step * 0.7:.1f}" height="{y0 - y1:.1f}" '
                f'style="fill:var(--chart-{n + 1},{PALETTE[n % len(PALETTE)]})">'
                f"<title>{escape(labels[i])}: {_fmt(value)}{escape(unit)} {escape(s.name)}"
                "</title></rect>"
            )
            base += value
    return _figure(chart_id, title, desc, labels, series, unit, top, step, "".join(parts))


def line_chart(
    chart_id: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    unit: str = "",
) -> Markup:
    """One line per series over the labels; a ``None`` breaks the line (e.g. p50 and p95)."""
    values = [v for s in series for v in s.values if v is not None]
    top = _nice_max(max(values, default=0))
    step = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    parts = []
    for n, s in enumerate(series):
        colour = f"var(--chart-{n + 1},{PALETTE[n % len(PALETTE)]})"
        dash = DASHES[n % len(DASHES)]
        runs: list[list[str]] = [[]]
        for i, value in enumerate(s.values):
            if value is None:
                runs.append([])
                continue
            x, y = LEFT + (i + 0.5) * step, _y(value, top)
            runs[-1].append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" style="fill:{colour}">'
                f"<title>{escape(labels[i])}: {escape(s.name)} {_fmt(value)}{escape(unit)}"
                "</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                parts.append(
                    f'<polyline points="{" ".join(run)}" style="fill:none;stroke:{colour};'
                    f'stroke-width:2" stroke-dasharray="{dash}"/>'
                )
    return _figure(chart_id, title, desc, labels, series, unit, top, step, "".join(parts))


def _figure(
    chart_id: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    unit: str,
    top: float,
    step: float,
    marks: str,
) -> Markup:
    cid = re.sub(r"[^A-Za-z0-9_-]", "-", chart_id)
    axis = []
    for tick in (0, top / 2, top):
        y = _y(tick, top)
        axis.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'style="stroke:currentColor;stroke-opacity:.2"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(tick)}{escape(unit)}</text>"
        )
    every = max(1, len(labels) // 6)  # at most about six x labels, so they never overlap
    for i, label in enumerate(labels):
        if (len(labels) - 1 - i) % every == 0:  # counted from the newest, which is labelled
            axis.append(
                f'<text x="{LEFT + (i + 0.5) * step:.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    legend = "".join(
        f'<li><span class="swatch" style="background:var(--chart-{n + 1},'
        f'{PALETTE[n % len(PALETTE)]})"></span>{escape(s.name)}</li>'
        for n, s in enumerate(series)
    )
    head = "".join(f'<th scope="col">{escape(s.name)}</th>' for s in series)
    rows = "".join(
        f'<tr><th scope="row">{escape(label)}</th>'
        + "".join(
            f"<td>{'–' if s.values[i] is None else _fmt(s.values[i]) + str(escape(unit))}</td>"
            for s in series
        )
        + "</tr>"
        for i, label in enumerate(labels)
    )
    # Every text from a caller went through escape() above; numbers are formatted here.
    return Markup(  # noqa: S704
        f'<figure class="chart" id="{cid}">'
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{cid}-title {cid}-desc" '
        'style="width:100%;height:auto;font-size:15px;fill:currentColor">'
        f'<title id="{cid}-title">{escape(title)}</title>'
        f'<desc id="{cid}-desc">{escape(desc)}</desc>'
        f"{''.join(axis)}{marks}</svg>"
        f'<figcaption>{escape(title)}<ul class="legend">{legend}</ul></figcaption>'
        f"<details><summary>The numbers</summary>"
        f'<div class="scroll"><table><tr><th scope="col">When</th>'
        f"{head}</tr>{rows}</table></div></details></figure>"
    )


def _y(value: float, top: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top)


def _nice_max(value: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten at or above ``value`` (1 when empty);
    small figures (dollars of GPU time) get a small top, not 0.1."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5):
        if value <= factor * magnitude * (1 + 1e-9):
            return float(factor * magnitude)
    return float(10 * magnitude)


def _fmt(value: float) -> str:
    """Three significant figures at most, without trailing zeros or an exponent: 12, 1.5,
    0.25, 0.0004."""
    if value == 0 or abs(value) >= 10 or float(value).is_integer():
        return f"{value:.0f}"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".")
