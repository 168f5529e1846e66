"""Reconciliation (beat, every ``RECONCILE_INTERVAL_S``), cancel, purge and cleanup.

The job row is the truth and Redis messages are hints (DESIGN invariant 1). Each sweep:

1. refreshes each endpoint's snapshot (``/health``, and ``/workers`` on the local endpoint);
2. re-enqueues ``submit`` for PENDING jobs whose message was lost;
3. SUBMITTING jobs whose attempt is CLAIMED (the task died before POST /run, which it marks
   by moving the attempt to UNKNOWN first) go back to PENDING: provably nothing was sent;
4. SUBMITTING jobs whose attempt is UNKNOWN (POST /run may have created a job but we never
   learnt its id). The worker claims every attempt before running it (``app.lifecycle.claims``), so:
   - a claim, a webhook or any payload carrying the job's id through its secret URL adopts
     that id (``app.lifecycle.status``), and the job is followed like any other;
   - after ``UNKNOWN_SUBMIT_GRACE_S`` without a claim: if ``/health`` shows nothing queued
     or running, or ``UNKNOWN_SUBMIT_MAX_S`` has passed even though the endpoint is busy,
     the attempt is closed and the job submitted again. Closing races a claim atomically;
     a lost RunPod job that a worker takes later is refused by the claim and never runs;
5. re-enqueues polls lost with Redis (``next_poll_at`` long past), replacing the chain;
6. gives a job that failed only because the app was unreachable its one automatic retry;
7. explains IN_QUEUE jobs that wait too long (crash loop, no capacity) from the snapshot,
   and when the endpoint counts nothing queued or running, polls the jobs still shown as
   queued or running now (their statuses are stale: ``app.endpoints.diagnosis.CHECKING``);
8. re-sends cancels that did not go through.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from app.endpoints.diagnosis import endpoint_queue
from app.endpoints.health import refresh_snapshots
from app.lifecycle.claims import close_unclaimed
from app.lifecycle.polling import (
    POLLED,
    SHARE_JITTER,
    budget_pace,
    count_in_flight,
    effective_cap,
    poll,
    schedule_poll,
)
from app.lifecycle.retry import AUTO_RETRY_KINDS, auto_retry
from app.lifecycle.status import apply_status
from app.lifecycle.submission import RetryLater, back_to_pending
from app.models import TERMINAL, AttemptState, Job, Status, utcnow
from app.services import EndpointNotFound, Enqueue, JobAPI, JobAPIError, JobNotFound, Services
from app.settings import Settings
from app.storage import Storage, remove_stale_staging

log = logging.getLogger(__name__)
BATCH = 500
MAX_SPREAD_S = 3600.0  # re-enqueued polls wait at most this: well under the visibility timeout


# Attempt states no RunPod job can still be running under.
CLOSED = (AttemptState.FAILED, AttemptState.SUPERSEDED, AttemptState.DUPLICATE)


def _older(seconds: float):
    return utcnow() - timedelta(seconds=seconds)


def _aware(value):
    return value if value is None or value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


def _endpoint_idle(snapshot: dict[str, Any] | None) -> bool:
    return endpoint_queue((snapshot or {}).get("health")) == 0


def reconcile(session: Session, services: Services) -> dict[str, int]:
    """One sweep; returns how many jobs each step touched."""
    settings, enqueue = services.settings, services.enqueue
    counts = {
        "submit": 0,
        "reclaimed": 0,
        "unknown": 0,
        "polls": 0,
        "retried": 0,
        "diagnosed": 0,
        "stale": 0,
        "cancel": 0,
    }
    # One snapshot per endpoint: a crash loop on one explains only its own jobs' waits.
    snapshots = refresh_snapshots(session, services)

    lost = select(Job.id).where(
        Job.status == Status.PENDING, Job.updated_at < _older(settings.submit_grace_s)
    )
    for job_id in session.scalars(lost.limit(BATCH)).all():
        enqueue("tasks.submit", job_id)
        counts["submit"] += 1

    stuck = select(Job).where(
        Job.status == Status.SUBMITTING, Job.updated_at < _older(settings.submit_grace_s)
    )
    for job in session.scalars(stuck.limit(BATCH)).all():
        attempt = job.current_attempt
        # No attempt, or only closed ones: the task stopped between taking the job and adding
        # its attempt (a resend after a lost /run answer has a FAILED one before it).
        if attempt is None or attempt.state in (AttemptState.CLAIMED, *CLOSED):
            if back_to_pending(session, job, "the task stopped before POST /run; nothing sent"):
                enqueue("tasks.submit", job.id)
                counts["reclaimed"] += 1
        elif attempt.state == AttemptState.UNKNOWN:
            if _aware(attempt.updated_at) < _older(settings.unknown_submit_grace_s):
                snapshot = snapshots.get(services.endpoint_of(job))
                counts["unknown"] += _resolve_unknown(session, job, snapshot, services)

    counts["polls"] = requeue_lost_polls(session, settings, enqueue)
    counts["retried"] = retry_own_failures(session, services)

    waiting = select(Job).where(
        Job.status.in_([Status.IN_QUEUE.value, Status.PENDING.value]),
        Job.created_at < _older(settings.queue_diagnose_after_s),
    )
    for job in session.scalars(waiting.limit(BATCH)).all():
        if job.status == Status.PENDING and job.unreachable_since:
            continue  # the submit path owns that diagnosis and its grace period
        snapshot = snapshots.get(services.endpoint_of(job)) or {}
        diagnosis = snapshot.get("diagnosis") or snapshot.get("error")
        if job.status == Status.IN_QUEUE and job.diagnosis != diagnosis:
            job.diagnosis = diagnosis
            counts["diagnosed"] += 1
    session.commit()
    for name, snapshot in snapshots.items():
        if endpoint_queue(snapshot.get("health")) == 0:
            counts["stale"] += poll_stale(session, settings, enqueue, name)

    cancels = select(Job.id).where(
        Job.cancel_requested_at.is_not(None),
        Job.cancel_requested_at < _older(30),
        Job.status.not_in([s.value for s in TERMINAL]),
    )
    for job_id in session.scalars(cancels.limit(BATCH)).all():
        enqueue("tasks.cancel", job_id)
        counts["cancel"] += 1
    return counts


def poll_stale(
    session: Session, settings: Settings, enqueue: Callable[..., None], endpoint: str
) -> int:
    """Endpoint ``endpoint`` counts nothing queued or running, yet its jobs still say so:
    their statuses are stale (finished there, the poll far off). Poll them now; each poll
    spends a /status ticket like any other."""
    soon = utcnow() + timedelta(seconds=5)
    rows = select(Job).where(
        Job.status.in_([Status.IN_QUEUE.value, Status.IN_PROGRESS.value]),
        Job.runpod_id.is_not(None),
        Job.endpoint == endpoint,
        Job.updated_at < _older(settings.queue_diagnose_after_s),
        or_(Job.next_poll_at.is_(None), Job.next_poll_at > soon),
    )
    jobs = session.scalars(rows.limit(BATCH)).all()
    for job in jobs:
        schedule_poll(session, job, enqueue, random.uniform(0, 2.0), count=False)
    return len(jobs)


def requeue_lost_polls(
    session: Session, settings: Settings, enqueue: Callable[..., None], limit: int = 10_000
) -> int:
    """Re-enqueue the polls Redis lost, spread so each comes within its effective cap.

    A poll is lost when it is overdue by more than a whole backoff cap plus the grace a busy
    worker queue gets. Each job's chain is taken over by bumping ``poll_seq`` (a stale
    message that still turns up finds the sequence moved on and stops). The new polls are
    spaced ``0.75 / budget_pace`` seconds apart, in the order they were due: a few lost
    polls go at once, and a flushed Redis with 10,000 jobs in flight becomes a steady stream
    under the budget that ends at 75 % of the effective cap
    (``app.lifecycle.polling.effective_cap``), where the fair-share delays of these jobs'
    next polls begin, so the two rounds do not pile up on the budget and no first poll comes
    past the cap.
    """
    late = _older(settings.poll_cap_s + settings.submit_grace_s)
    rows = session.execute(
        select(Job.id, Job.poll_seq)
        .where(
            Job.status.in_([s.value for s in POLLED]),
            Job.runpod_id.is_not(None),
            or_(Job.next_poll_at.is_(None), Job.next_poll_at < late),
        )
        .order_by(Job.next_poll_at)
        .limit(limit)
    ).all()
    if not rows:
        return 0
    share = SHARE_JITTER[0]
    spacing = share / budget_pace(settings)
    # Never spread past the cap the dashboard promises (also when some rows were not lost).
    spread = share * effective_cap(settings, max(count_in_flight(session), len(rows)))
    now = utcnow()
    table = Job.__table__
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.poll_seq == bindparam("b_seq"))
        .values(
            poll_seq=bindparam("b_new"),
            next_poll_at=bindparam("b_at"),
            version=table.c.version + 1,
        )
    )
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        delays = [
            min((start + i + random.random()) * spacing, spread, MAX_SPREAD_S)
            for i in range(len(chunk))
        ]
        params = [
            {"b_id": job_id, "b_seq": seq, "b_new": seq + 1, "b_at": now + timedelta(seconds=d)}
            for (job_id, seq), d in zip(chunk, delays, strict=True)
        ]
        session.connection().execute(statement, params)
        session.commit()
        for (job_id, seq), delay in zip(chunk, delays, strict=True):
            enqueue("tasks.poll", job_id, seq + 1, countdown=delay)
    return len(rows)


def _resolve_unknown(
    session: Session,
    job: Job,
    snapshot: dict[str, Any] | None,
    services: Services,
) -> int:
    """Settle a submit whose POST /run outcome is unknown, from evidence (invariant 3).

    A claim arrived: a worker runs it, so adopt that RunPod job and poll it (its result,
    timings and cost come through ``apply_status`` like any other job's). No claim after
    the grace: if the endpoint shows nothing queued or running, or ``UNKNOWN_SUBMIT_MAX_S``
    has passed anyway, close the attempt and submit again. Closing is atomic against a
    claim arriving at that moment (``close_unclaimed``), and a worker that later picks up
    the lost RunPod job is refused by the claim (410), so it never runs.
    """
    attempt = job.current_attempt
    if attempt.claimed_runpod_id:
        return _adopt(session, job, attempt.claimed_runpod_id, services, services.enqueue)
    waited = utcnow() - _aware(attempt.updated_at)
    if not (
        _endpoint_idle(snapshot)
        or waited > timedelta(seconds=services.settings.unknown_submit_max_s)
    ):
        return 0
    reason = (
        "submit outcome unknown; no worker claimed it and the endpoint shows no job"
        if _endpoint_idle(snapshot)
        else f"submit outcome unknown; no worker claimed it in {waited.total_seconds():.0f} s"
    )
    if back_to_pending(session, job, reason):
        services.enqueue("tasks.submit", job.id)
        return 1
    session.refresh(job)
    attempt = job.current_attempt
    if job.status == Status.SUBMITTING and attempt.claimed_runpod_id:
        return _adopt(session, job, attempt.claimed_runpod_id, services, services.enqueue)
    return 0


def _adopt(
    session: Session,
    job: Job,
    runpod_id: str,
    services: Services,
    enqueue: Enqueue,
) -> int:
    """The worker of ``runpod_id`` claimed the job's attempt: follow that RunPod job (its
    poll sent with ``enqueue``)."""
    payload = {"id": runpod_id, "status": Status.IN_PROGRESS.value}
    apply_status(session, job, payload, "reconcile", services)
    session.refresh(job)
    if job.runpod_id == runpod_id and job.status in POLLED:
        schedule_poll(session, job, enqueue, 0.0, count=False)
    return 1


def retry_own_failures(session: Session, services: Services) -> int:
    """Give jobs that failed only because the app was unreachable their one automatic retry
    (``app.lifecycle.retry.auto_retry``), if the poll or webhook that failed them could not."""
    due = select(Job).where(
        Job.status == Status.FAILED,
        Job.failure_kind.in_(sorted(AUTO_RETRY_KINDS)),
        Job.auto_retries == 0,
    )
    return sum(
        auto_retry(session, job, services) for job in session.scalars(due.limit(BATCH)).all()
    )


def cancel(
    session: Session,
    job_id: str,
    services: Services,
    *,
    follow_up: bool = False,
) -> str:
    """Cancel the job at the endpoint (if it has it) and record CANCELLED; if it finished
    first, with ``follow_up`` its poll is brought forward (no ``/status`` call here, outside
    the budget)."""
    enqueue = services.enqueue if follow_up else None
    job = session.get(Job, job_id)
    if job is None or job.terminal:
        return "nothing to cancel"
    reason = "cancelled at your request"
    if job.runpod_id:
        try:
            answer = services.api_for(services.endpoint_of(job)).cancel(job.runpod_id)
        except (JobNotFound, EndpointNotFound):
            answer = {"status": "CANCELLED"}
        except JobAPIError as exc:
            raise RetryLater(str(exc)) from exc
        if answer.get("status") != "CANCELLED":
            # It finished first. Its poll (under the /status budget, like every /status
            # call) records how it really ended: bring that poll forward.
            if enqueue is not None:
                schedule_poll(session, job, enqueue, 0.0, count=False)
            return f"finished before the cancel ({answer.get('status')}); polling it now"
    elif job.status == Status.SUBMITTING:
        attempt = job.current_attempt
        if attempt is not None and attempt.claimed_runpod_id:
            # A worker claimed it though its id never reached us: cancel that RunPod job.
            _adopt(session, job, attempt.claimed_runpod_id, services, enqueue or _drop)
            if not job.runpod_id:
                raise RetryLater("a worker claimed the job; cancel once its id is adopted")
            return cancel(session, job_id, services, follow_up=follow_up)
        if attempt is None or attempt.state != AttemptState.UNKNOWN:
            # Not yet sent: the submit task re-sends this cancel once the endpoint has it.
            raise RetryLater("the submit is in progress; cancel once the endpoint has the job")
        # Sent, outcome unknown: close the attempt unless a claim wins the race; a worker
        # that picks up the lost RunPod job later is refused by the claim (410).
        if not close_unclaimed(session, attempt, AttemptState.SUPERSEDED, reason):
            session.rollback()
            return cancel(session, job_id, services, follow_up=follow_up)
        answer = {"status": "CANCELLED"}
    else:
        answer = {"status": "CANCELLED"}
    payload = {**answer, "id": job.runpod_id, "reason": reason}
    apply_status(session, job, payload, "cancel", services)
    return job.status


def _drop(*_args: Any, **_kwargs: Any) -> None:
    """An enqueue that sends nothing (the cancel that follows makes the poll moot)."""


def cancel_remote(api: JobAPI, runpod_id: str) -> None:
    """Cancel a duplicate execution at the endpoint; its result is ignored."""
    try:
        api.cancel(runpod_id)
    except (JobNotFound, EndpointNotFound):
        pass


def purge(session: Session, services: Services, endpoint: str) -> dict[str, Any]:
    """Purge endpoint ``endpoint``'s queue, then poll its queued jobs now so they show
    CANCELLED; other endpoints' jobs are not touched.

    The polls go through that endpoint's /status budget with its ``status_api_for`` (one
    attempt per call); those the budget refuses now follow on their chains."""
    answer = services.api_for(endpoint).purge_queue()
    queued = session.scalars(
        select(Job)
        .where(
            Job.status == Status.IN_QUEUE,
            Job.runpod_id.is_not(None),
            Job.endpoint == endpoint,
        )
        .limit(5000)
    ).all()
    for job in queued:
        poll(session, job.id, job.poll_seq, services)
    cancelled = sum(1 for job in queued if job.status == Status.CANCELLED)
    return {
        "endpoint": endpoint,
        "removed": int(answer.get("removed") or 0),
        "cancelled": cancelled,
    }


ORPHAN_AGE_S = 3600.0  # far longer than any upload takes from storing its file to its row


def cleanup(
    session: Session, services: Services, *, orphan_age_s: float = ORPHAN_AGE_S
) -> dict[str, int]:
    """Delete the files of jobs that ended more than ``RETENTION_DAYS`` ago, and files whose
    job row never came to be (an upload killed between storing its file and committing its
    row) once they are ``orphan_age_s`` old."""
    settings, storage = services.settings, services.storage
    cutoff = utcnow() - timedelta(days=settings.retention_days)
    expired = select(Job).where(
        Job.status.in_([s.value for s in TERMINAL]),
        Job.finished_at < cutoff,
        Job.files_deleted_at.is_(None),
    )
    jobs = session.scalars(expired.limit(BATCH)).all()
    files = 0
    for job in jobs:
        files += storage.delete_prefix(f"jobs/{job.id}/")
        job.files_deleted_at = utcnow()
    session.commit()
    staged = remove_stale_staging(storage, 24 * 3600)
    return {
        "jobs": len(jobs),
        "files": files,
        "staging": staged,
        "orphans": remove_orphaned_jobs(session, storage, orphan_age_s),
    }


def remove_orphaned_jobs(session: Session, storage: Storage, older_than_s: float) -> int:
    """Delete ``jobs/<id>/`` folders that have no job row and are ``older_than_s`` old."""
    cutoff = time.time() - older_than_s
    candidates = [job_id for job_id, mtime in storage.iter_job_folders() if mtime < cutoff]
    removed = 0
    for start in range(0, len(candidates), BATCH):
        chunk = candidates[start : start + BATCH]
        known = set(session.scalars(select(Job.id).where(Job.id.in_(chunk))).all())
        for job_id in chunk:
            if job_id not in known:
                storage.delete_prefix(f"jobs/{job_id}/")
                removed += 1
    return removed
