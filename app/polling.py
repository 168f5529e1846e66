"""Polling a job's status: one ``/status`` call per poll, capped exponential backoff with
jitter, under the global budget (DESIGN invariant 5).

Each job has one poll chain: the message carries the job's ``poll_seq`` and scheduling the
next poll bumps it with compare-and-set, so a chain re-enqueued by reconcile (after Redis
lost the message) replaces the old one instead of doubling it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import Job, Status, utcnow
from app.settings import Settings
from app.status import apply_status, purged_payload
from app.storage import Storage
from app.submission import mark_unreachable

POLLED = (Status.IN_QUEUE, Status.IN_PROGRESS)
# With webhooks on, polls are the safety net: the first one waits this long.
WEBHOOK_FIRST_POLL_S = 15.0
MAX_SHARE_S = 1800.0  # fair-share waits stay well under the broker's visibility timeout


def backoff(settings: Settings, poll_count: int) -> float:
    """Seconds until the next poll: ``min(cap, base * 2^n)``, jittered down to half of it.

    With webhooks on, the webhook brings the result and polls are only the safety net, so
    they start from ``WEBHOOK_FIRST_POLL_S`` instead of ``POLL_BASE_S`` (fewer /status calls
    per job; a lost webhook still shows within ``POLL_CAP_S``).
    """
    base = max(settings.poll_base_s, WEBHOOK_FIRST_POLL_S) if settings.use_webhooks else None
    base = base or settings.poll_base_s
    ceiling = min(settings.poll_cap_s, base * 2 ** min(poll_count, 30))
    return ceiling * random.uniform(0.5, 1.0)


def first_delay(settings: Settings) -> float:
    if settings.use_webhooks:
        return min(settings.poll_cap_s, WEBHOOK_FIRST_POLL_S) * random.uniform(0.8, 1.0)
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
    *,
    settings: Settings,
    storage: Storage,
    api,
    budget,
    enqueue: Callable[..., None],
) -> str:
    """One poll of one job; schedules the next unless the job is done."""
    from deploy.jobapi import EndpointNotFound, JobAPIError, JobNotFound

    job = session.get(Job, job_id)
    if job is None or job.poll_seq != seq:
        return "stale poll chain"
    if Status(job.status) not in POLLED or not job.runpod_id:
        return f"not polled in {job.status}"
    wait = budget.acquire()
    if wait:
        schedule_poll(session, job, enqueue, wait, count=False)
        return f"over budget; next in {wait:.1f}s"
    job.last_polled_at = utcnow()
    session.commit()
    try:
        payload = api.status(job.runpod_id)
    except JobNotFound:
        apply_status(
            session, job, purged_payload(job.runpod_id), "poll", settings=settings, storage=storage
        )
        return "purged or expired"
    except EndpointNotFound:
        if mark_unreachable(session, job, settings, storage):
            return "endpoint unreachable: failed"
        schedule_poll(session, job, enqueue, backoff(settings, job.poll_count))
        return "endpoint unreachable"
    except JobAPIError as exc:
        schedule_poll(session, job, enqueue, backoff(settings, job.poll_count))
        return f"poll failed ({exc}); will retry"
    if job.unreachable_since:
        job.unreachable_since = None
        job.diagnosis = None
    apply_status(session, job, payload, "poll", settings=settings, storage=storage)
    if job.terminal:
        return job.status
    schedule_poll(session, job, enqueue, next_delay(session, settings, job.poll_count))
    return job.status


def next_delay(session: Session, settings: Settings, poll_count: int) -> float:
    """The backoff, stretched to each job's fair share of the budget when so many jobs are
    in flight that the budget cannot poll them all that often (10,000 jobs at 200 per 10 s:
    about every 9 minutes each); polled jobs then do not crowd out the ones still waiting."""
    in_flight = session.scalar(
        select(func.count()).select_from(Job).where(Job.status.in_([s.value for s in POLLED]))
    )
    per_second = max(settings.status_budget_per_10s // 11, 1)  # the budget's pace
    share = min((in_flight or 0) / per_second, MAX_SHARE_S) * random.uniform(0.9, 1.1)
    return max(backoff(settings, poll_count), share)
