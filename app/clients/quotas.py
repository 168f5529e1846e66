"""A named token's quotas: jobs running at once, jobs per UTC day, spend per UTC day.

Checked before a job is created; over a limit the API answers 429 naming the limit and
when it resets (``Retry-After``). Two requests racing for a token's last slot may both
pass (the check is not a lock): quotas bound a client's use, they are not a budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clients.tokens import owner_of
from app.models import TERMINAL, ApiToken, Job, utcnow


@dataclass(frozen=True)
class Usage:
    running: int
    jobs_today: int
    spend_today: float
    last_job_at: datetime | None


@dataclass(frozen=True)
class OverQuota:
    limit: str  # max_concurrent, max_jobs_per_day or max_spend_per_day
    message: str
    retry_after_s: int
    resets_at: datetime | None  # None for max_concurrent: when a running job ends


def day_start(now: datetime) -> datetime:
    return datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)


def usage(session: Session, row: ApiToken, now: datetime | None = None) -> Usage:
    owner = owner_of(row)
    since = day_start(now or utcnow())
    running = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.owner == owner, Job.status.not_in([s.value for s in TERMINAL]))
    )
    today, spend = session.execute(
        select(func.count(), func.coalesce(func.sum(Job.cost_usd), 0.0)).where(
            Job.owner == owner, Job.created_at >= since
        )
    ).one()
    last = session.scalar(select(func.max(Job.created_at)).where(Job.owner == owner))
    return Usage(running or 0, today or 0, float(spend or 0.0), last)


def check(session: Session, row: ApiToken) -> OverQuota | None:
    """The first limit a new job would pass, or None."""
    now = utcnow()
    tomorrow = day_start(now) + timedelta(days=1)
    until_tomorrow = max(int((tomorrow - now).total_seconds()), 1)
    used = usage(session, row, now)
    if row.max_concurrent is not None and used.running >= row.max_concurrent:
        return OverQuota(
            "max_concurrent",
            f"token {row.name!r} has {used.running} jobs unfinished, its limit "
            f"(max_concurrent {row.max_concurrent}); submit again when one ends",
            10,
            None,
        )
    if row.max_jobs_per_day is not None and used.jobs_today >= row.max_jobs_per_day:
        return OverQuota(
            "max_jobs_per_day",
            f"token {row.name!r} made {used.jobs_today} jobs today, its limit "
            f"(max_jobs_per_day {row.max_jobs_per_day}); it resets at {tomorrow.isoformat()}",
            until_tomorrow,
            tomorrow,
        )
    if row.max_spend_per_day is not None and used.spend_today >= row.max_spend_per_day:
        return OverQuota(
            "max_spend_per_day",
            f"token {row.name!r} spent ${used.spend_today:.4f} today, its limit "
            f"(max_spend_per_day ${row.max_spend_per_day:.2f}); it resets at "
            f"{tomorrow.isoformat()}",
            until_tomorrow,
            tomorrow,
        )
    return None
