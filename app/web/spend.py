"""The dashboard's spend section (issue 19): the breaker banners with their fix and resume
button, the budgets' use, and spend per day per endpoint and per pipeline with the share
that was idle or start-up, as a server-rendered SVG chart (no script, no build step)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from app.endpoints import billing, breaker, budgets
from app.settings import Settings
from app.web.charts import Series, bar_chart


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
    """Stacked bars, one per UTC day, one series per endpoint or pipeline and one for idle
    time, drawn by the dashboard's one chart renderer (``app.web.charts``)."""
    keys = sorted({k for d in daily for k in getattr(d, part)}, key=lambda k: (k == "idle", k))
    what = "pipeline" if part == "by_pipeline" else "endpoint"
    return bar_chart(
        f"spend-{part}",
        f"GPU spend per day by {what} (USD)",
        f"Billed dollars per UTC day over the last {len(daily)} days, one series per {what} "
        "and one for idle workers; start-up is inside each job's share.",
        [d.day.strftime("%m-%d") for d in daily],
        [Series(k, [getattr(d, part).get(k, 0.0) for d in daily]) for k in keys],
        unit=" USD",
    )
