"""The dashboard's spend section (issue 19): the breaker banners with their fix and resume
button, the budgets' use, and spend per day per endpoint and per pipeline with the share
that was idle or start-up, as a server-rendered SVG chart (no script, no build step)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from app.endpoints import billing, breaker, budgets
from app.settings import Settings

WIDTH, HEIGHT, PAD = 640, 200, 28
COLOURS = ("#3b6ea5", "#6aa84f", "#e69138", "#8e7cc3", "#c27ba0", "#76a5af")
IDLE_COLOUR, STARTUP_COLOUR = "#bbbbbb", "#e06666"


def context(session: Session, settings: Settings, days: int = 14) -> dict[str, Any]:
    daily = billing.daily(session, days)
    total = sum(d.total_usd for d in daily)
    return {
        "breakers": breaker.all_open(session),
        "budget_use": budgets.use(session, settings),
        "held_by_budget": len(budgets.held_jobs(session)),
        "spend_days": daily,
        "spend_total": total,
        "idle_share": sum(d.idle_usd for d in daily) / total if total else 0.0,
        "startup_share": sum(d.startup_usd for d in daily) / total if total else 0.0,
        "chart_by_pipeline": chart(daily, "by_pipeline"),
        "chart_by_endpoint": chart(daily, "by_endpoint"),
    }


def chart(daily: list[billing.Day], part: str) -> Markup:
    """Stacked bars, one per UTC day, one colour per endpoint or pipeline (idle in grey), a
    red tick for the start-up share; every figure also in a <title> for screen readers."""
    keys = sorted({k for d in daily for k in getattr(d, part)}, key=lambda k: (k == "idle", k))
    colour = {
        k: IDLE_COLOUR if k == "idle" else COLOURS[i % len(COLOURS)] for i, k in enumerate(keys)
    }
    top = max((d.total_usd for d in daily), default=0.0) or 1.0
    bar = (WIDTH - PAD) / max(len(daily), 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="spend-chart" data-part="{part}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT + 40}" width="100%" role="img">',
        f'<text x="0" y="12" font-size="10">${top:,.4f}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" stroke="#999"/>',
    ]
    for i, day in enumerate(daily):
        x = PAD + i * bar
        y = float(HEIGHT)
        for key in keys:
            usd = getattr(day, part).get(key, 0.0)
            if usd <= 0:
                continue
            h = usd / top * (HEIGHT - 16)
            y -= h
            out.append(
                f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{bar - 4:.1f}" height="{h:.1f}" '
                f'fill="{colour[key]}"><title>{escape(day.day.isoformat())} {escape(key)}: '
                f"${usd:,.6f}</title></rect>"
            )
        if day.startup_usd > 0:
            h = day.startup_usd / top * (HEIGHT - 16)
            out.append(
                f'<rect x="{x + bar - 6:.1f}" y="{HEIGHT - h:.1f}" width="3" height="{h:.1f}" '
                f'fill="{STARTUP_COLOUR}"><title>{escape(day.day.isoformat())} start-up: '
                f"${day.startup_usd:,.6f}</title></rect>"
            )
        if i % 2 == 0:
            out.append(
                f'<text x="{x + 2:.1f}" y="{HEIGHT + 12}" font-size="9">'
                f"{day.day.strftime('%m-%d')}</text>"
            )
    for i, key in enumerate(keys):
        out.append(
            f'<rect x="{PAD + i * 110}" y="{HEIGHT + 22}" width="10" height="10" '
            f'fill="{colour[key]}"/><text x="{PAD + i * 110 + 14}" y="{HEIGHT + 31}" '
            f'font-size="10">{escape(key)}</text>'
        )
    out.append("</svg>")
    # Safe: numbers we formatted and names passed through escape() above.
    return Markup("".join(out))  # noqa: S704
