"""Spend budgets (issue 19): a job that would start past one is held, never sent.

Limits, in USD, per UTC day and per UTC month: ``BUDGET_USD_PER_DAY`` / ``_PER_MONTH`` for
all endpoints together, ``BUDGET_USD_PER_DAY_BY_ENDPOINT`` / ``_PER_MONTH_BY_ENDPOINT`` as
``name=usd`` pairs for one endpoint. ``flask admin budget --set`` stores an override (it wins
over the setting until cleared), ``--release`` lets the held jobs go once. Spend is the bill
(``app.endpoints.billing``): every billed second, idle and start-up included.

``hold_reason`` is asked by submission before POST /run; the held job stays PENDING with
the words as its ``diagnosis`` (its page and the API's ``message`` show them). A job
already sent is never stopped by a budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.endpoints import billing
from app.models import Job, Snapshot, Status, utcnow
from app.settings import Settings

OVERRIDES = "budget-overrides"  # Snapshot row: {"day": {scope: usd}, "month": {...}}
RELEASED = "budget-released"  # Snapshot row: {"jobs": [job ids let past the budget once]}
ALL = "*"  # the scope of a budget over every endpoint
PERIODS = ("day", "month")
HELD = "waiting: the "  # how every budget hold's words begin
RELEASED_KEPT = 1000


def period_start(period: str, now: datetime | None = None) -> datetime:
    now = now or utcnow()
    if period == "day":
        return datetime(now.year, now.month, now.day, tzinfo=UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def _pairs(pairs: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, _, usd = pair.partition("=")
        out[name.strip()] = float(usd)
    return out


def configured(settings: Settings) -> dict[str, dict[str, float]]:
    """The settings' budgets: ``{"day": {scope: usd}, "month": {...}}`` (0: none)."""
    return {
        "day": {
            ALL: settings.budget_usd_per_day,
            **_pairs(settings.budget_usd_per_day_by_endpoint),
        },
        "month": {
            ALL: settings.budget_usd_per_month,
            **_pairs(settings.budget_usd_per_month_by_endpoint),
        },
    }


def _row(session: Session, name: str) -> dict:
    row = session.get(Snapshot, name)
    return dict(row.data) if row else {}


def _write(session: Session, name: str, data: dict) -> None:
    row = session.get(Snapshot, name)
    if row is None:
        session.add(Snapshot(name=name, data=data))
    else:
        row.data = data
    session.commit()


def limits(session: Session, settings: Settings) -> dict[str, dict[str, float]]:
    """The budgets in force: the settings', with the operator's stored overrides on top."""
    merged = configured(settings)
    for period, scopes in _row(session, OVERRIDES).items():
        merged.setdefault(period, {}).update({k: float(v) for k, v in scopes.items()})
    return merged


def set_override(session: Session, period: str, scope: str, usd: float | None) -> None:
    """Store (or with None clear) an operator's budget for ``period`` and ``scope``."""
    if period not in PERIODS:
        raise ValueError(f"no budget period {period!r}: use day or month")
    if usd is not None and usd < 0:
        raise ValueError("a budget must be 0 (none) or more USD")
    data = _row(session, OVERRIDES)
    scopes = dict(data.get(period) or {})
    if usd is None:
        scopes.pop(scope, None)
    else:
        scopes[scope] = usd
    data[period] = scopes
    _write(session, OVERRIDES, data)


def words(period: str, usd: float, scope: str) -> str:
    """The held job's words (its page, the API's ``message``)."""
    kind = "daily" if period == "day" else "monthly"
    where = "" if scope == ALL else f" for endpoint {scope}"
    resets = "00:00 UTC" if period == "day" else "00:00 UTC on the 1st"
    return f"waiting: the {kind} GPU budget of ${usd:,.2f}{where} is spent (resets at {resets})"


def released(session: Session) -> set[str]:
    return set(_row(session, RELEASED).get("jobs") or [])


def hold_reason(session: Session, settings: Settings, job: Job) -> str | None:
    """Why ``job`` may not start now (a budget spent), or None when it may."""
    if job.id in released(session):
        return None
    endpoint = billing.endpoint_of(job)
    for period, scopes in limits(session, settings).items():
        since = period_start(period)
        for scope in (ALL, endpoint):
            usd = scopes.get(scope) or 0.0
            if usd > 0 and billing.spent(session, since, None if scope == ALL else scope) >= usd:
                return words(period, usd, scope)
    return None


def held_jobs(session: Session) -> list[Job]:
    """Jobs a budget holds: PENDING with a budget's words."""
    return list(
        session.scalars(
            select(Job).where(Job.status == Status.PENDING, Job.diagnosis.startswith(HELD))
        ).all()
    )


def release(session: Session, jobs: list[Job]) -> list[str]:
    """Let ``jobs`` past the budgets once (their submit is the caller's to enqueue)."""
    ids = [job.id for job in jobs]
    kept = list(released(session) | set(ids))[-RELEASED_KEPT:]
    _write(session, RELEASED, {"jobs": kept})
    return ids


@dataclass(frozen=True)
class Use:
    period: str
    scope: str
    limit_usd: float
    spent_usd: float


def use(session: Session, settings: Settings) -> list[Use]:
    """Each budget in force with what its period has spent (``flask admin budget``)."""
    out = []
    for period, scopes in limits(session, settings).items():
        since = period_start(period)
        for scope, usd in sorted(scopes.items()):
            if usd > 0:
                spent = billing.spent(session, since, None if scope == ALL else scope)
                out.append(Use(period, scope, usd, spent))
    return out
