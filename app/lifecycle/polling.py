"""Polling a job's status: one ``/status`` call per poll, capped exponential backoff with
jitter, under the global budget (DESIGN invariant 5).

Each job has one poll chain: the message carries the job's ``poll_seq`` and scheduling the
next poll bumps it with compare-and-set, so a chain re-enqueued by reconcile (after Redis
lost the message) replaces the old one instead of doubling it.

The promise to every job in flight is its *effective cap* (``effective_cap``): it is polled
at least every ``max(POLL_CAP_S, in_flight / budget_pace)`` seconds. ``POLL_CAP_S`` alone
cannot hold when more jobs are in flight than the budget can poll that often (10,000 jobs at
500 per 10 s need minutes per sweep), so each job's interval stretches to its fair share.
Every delay this module (and reconcile, re-enqueueing lost polls) schedules ends at
``(1 - SLACK)`` of that cap, leaving the rest for the worker queue and the budget's waits.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.lifecycle import status_budget
from app.lifecycle.status import apply_status, mark_unreachable, purged_payload
from app.models import Job, Status, utcnow
from app.services import EndpointNotFound, JobAPIError, JobNotFound, Services
from app.settings import Settings

POLLED = (Status.IN_QUEUE, Status.IN_PROGRESS)
# With webhooks on, polls are the safety net: the first one waits this long.
WEBHOOK_FIRST_POLL_S = 15.0
MAX_SHARE_S = 1800.0  # fair-share waits stay well under the broker's visibility timeout
# Polls are planned at this share of what the budget lets through: fair-share delays are
# jittered (on average they come a little early), new jobs start with short backoffs, and
# purge or a cancel's follow-up poll need room too; planned at full pace, the budget would
# refuse polls all the time and their waits would push jobs past their cap.
PLAN_SHARE = 2 / 3
SLACK = 0.1  # scheduled delays end at 90 % of the cap: the rest absorbs queueing and waits
SHARE_JITTER = (0.75, 1 - SLACK)  # fair-share delays, as fractions of the effective cap


def budget_pace(settings: Settings) -> float:
    """Polls per second the scheduler plans for: ``PLAN_SHARE`` of the budget's pace
    (``STATUS_BUDGET_PER_10S // 12`` per second, see ``app.lifecycle.status_budget``)."""
    return status_budget.pace(settings.status_budget_per_10s) * PLAN_SHARE


def effective_cap(settings: Settings, in_flight: int) -> float:
    """The longest any job in flight waits between polls (and for its first poll after
    reconcile re-enqueues it): ``max(POLL_CAP_S, in_flight / budget_pace)`` seconds."""
    return max(settings.poll_cap_s, in_flight / budget_pace(settings))


def count_in_flight(session: Session, endpoint: str | None = None) -> int:
    """Jobs polled now: IN_QUEUE or IN_PROGRESS at the endpoint (``endpoint``'s only, by
    name: each endpoint has its own budget, so each its own fair share)."""
    statement = select(func.count()).select_from(Job)
    statement = statement.where(Job.status.in_([s.value for s in POLLED]))
    if endpoint is not None:
        statement = statement.where(Job.endpoint == endpoint)
    return int(session.scalar(statement) or 0)


def poll_plan(session: Session, settings: Settings, endpoint: str | None = None) -> dict[str, Any]:
    """What the admin dashboard and ``flask admin health`` show about polling (of
    ``endpoint``'s jobs under its budget; every job's when None)."""
    in_flight = count_in_flight(session, endpoint)
    return {
        "in_flight": in_flight,
        "budget_per_10s": settings.status_budget_per_10s,
        "budget_per_s": status_budget.pace(settings.status_budget_per_10s),
        "planned_per_s": round(budget_pace(settings), 2),
        "poll_cap_s": settings.poll_cap_s,
        "effective_cap_s": round(effective_cap(settings, in_flight), 1),
    }


def backoff(settings: Settings, poll_count: int) -> float:
    """Seconds until the next poll: ``min(cap, base * 2^n)``, jittered to 50-90 % of it
    (never the whole cap: the rest is ``SLACK`` for the queue and the budget).

    With webhooks on, the webhook brings the result and polls are only the safety net, so
    they start from ``WEBHOOK_FIRST_POLL_S`` instead of ``POLL_BASE_S`` (fewer /status calls
    per job; a lost webhook still shows within ``POLL_CAP_S``).
    """
    base = max(settings.poll_base_s, WEBHOOK_FIRST_POLL_S) if settings.use_webhooks else None
    base = base or settings.poll_base_s
    ceiling = min(settings.poll_cap_s, base * 2 ** min(poll_count, 30))
    return ceiling * random.uniform(0.5, 1 - SLACK)


def first_delay(settings: Settings) -> float:
    if settings.use_webhooks:
        cap = settings.poll_cap_s * (1 - SLACK)
        return min(cap, WEBHOOK_FIRST_POLL_S * random.uniform(0.8, 1.0))
    return backoff(settings, 0)


def schedule_poll(
    session: Session,
    job: Job,
    enqueue: Callable[..., None],
    delay: float,
    *,
    count: bool = True,
) -> bool:
    """Take over the job's poll chain and enqueue its next poll in ``delay`` seconds."""
    seq = job.poll_seq
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.poll_seq == seq, Job.status.in_([s.value for s in POLLED]))
        .values(
            poll_seq=seq + 1,
            poll_count=Job.poll_count + (1 if count else 0),
            next_poll_at=utcnow() + timedelta(seconds=delay),
            version=Job.version + 1,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    session.expire(job)
    if result.rowcount != 1:
        return False
    enqueue("tasks.poll", job.id, seq + 1, countdown=delay)
    return True


def poll(
    session: Session,
    job_id: str,
    seq: int,
    services: Services,
) -> str:
    """One poll of one job (with its endpoint's ``status_api_for``, under that endpoint's
    ``budget_for``); schedules the next unless the job is done."""
    settings, enqueue = services.settings, services.enqueue
    job = session.get(Job, job_id)
    if job is None or job.poll_seq != seq:
        return "stale poll chain"
    if Status(job.status) not in POLLED or not job.runpod_id:
        return f"not polled in {job.status}"
    # The ticket is taken right before the request (nothing in between), so the request
    # reaches the endpoint well within the budget's SKEW_S of its ticket.
    endpoint = services.endpoint_of(job)
    wait = services.budget_for(endpoint).acquire()
    if wait:
        schedule_poll(session, job, enqueue, wait, count=False)
        return f"over budget; next in {wait:.1f}s"
    polled_at = utcnow()
    error: JobAPIError | None = None
    try:
        payload = services.status_api_for(endpoint).status(job.runpod_id)
    except JobAPIError as exc:
        error = exc
    _record_poll(session, job, polled_at)
    if isinstance(error, JobNotFound):
        apply_status(session, job, purged_payload(job.runpod_id), "poll", services)
        return "purged or expired"
    if isinstance(error, EndpointNotFound):
        if mark_unreachable(session, job, services):
            return "endpoint unreachable: failed"
        schedule_poll(
            session, job, enqueue, next_delay(session, settings, job.poll_count, endpoint)
        )
        return "endpoint unreachable"
    if error is not None:
        schedule_poll(
            session, job, enqueue, next_delay(session, settings, job.poll_count, endpoint)
        )
        return f"poll failed ({error}); will retry"
    if job.unreachable_since:
        job.unreachable_since = None
        job.diagnosis = None
    apply_status(session, job, payload, "poll", services, retry_own_failure=True)
    if job.terminal:
        return job.status
    schedule_poll(session, job, enqueue, next_delay(session, settings, job.poll_count, endpoint))
    return job.status


def _record_poll(session: Session, job: Job, polled_at: datetime) -> None:
    """Stamp ``last_polled_at`` without bumping the row's version: a webhook applied while
    the request was under way must not make this poll's bookkeeping conflict with it."""
    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(last_polled_at=polled_at)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    set_committed_value(job, "last_polled_at", polled_at)


def next_delay(
    session: Session, settings: Settings, poll_count: int, endpoint: str | None = None
) -> float:
    """The backoff, but never shorter than the job's fair share of the budget: 75-90 % of
    ``in_flight / budget_pace`` (10,000 jobs at 500 per 10 s: about every 5 minutes each).
    Then however many jobs are in flight, their polls together ask for at most ~80 % of what
    the budget lets through, so refusals stay rare and no job is pushed past its cap; and
    both terms end by 90 % of the effective cap."""
    share = (
        count_in_flight(session, endpoint) / budget_pace(settings) * random.uniform(*SHARE_JITTER)
    )
    return min(max(backoff(settings, poll_count), share), MAX_SHARE_S)
