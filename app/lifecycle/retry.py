"""A new attempt for a finished job: the one restart ``jobs.retry_job`` (a person's) and
``auto_retry`` (the app's, once, after a failure that was its own) share.

Below ``status``: applying a FAILED status of an ``AUTO_RETRY_KINDS`` kind retries the job
from inside the one apply, so this module imports nothing else of the lifecycle.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import RETRYABLE, AttemptState, Job, Status, utcnow
from app.services import Services

# Failures that were the app's, not the job's: the worker could not reach the app's storage
# or its claim URL (an outage, a restart). The job gets one new attempt by itself.
AUTO_RETRY_KINDS = frozenset({"storage_unreachable", "app_unreachable"})


def refusal(job: Job, services: Services) -> str | None:
    """Why ``job`` cannot start a new attempt (a 409 for a person), or None when it can."""
    if job.status not in RETRYABLE:
        return "only failed, cancelled or timed-out jobs can be retried"
    if job.files_deleted_at or not job.input_key or not services.storage.exists(job.input_key):
        return "the input file was deleted by retention; upload it again"
    return None


def restart(session: Session, job: Job, services: Services) -> bool:
    """Make a retryable job PENDING again with a clean slate, supersede its open attempts
    and enqueue its submit. False (rolled back) when the job changed meanwhile."""
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_([s.value for s in RETRYABLE]))
        .values(
            status=Status.PENDING,
            version=Job.version + 1,
            runpod_id=None,
            # A new attempt goes where the pipeline is served now (it may have moved).
            endpoint=services.fleet.route(None, job.pipeline).name,
            error=None,
            error_detail=None,
            diagnosis=None,
            progress=None,
            result=None,
            output_size=None,
            finished_at=None,
            started_at=None,
            submitted_at=None,
            # The new attempt starts clean: the last one's figures stay on its Attempt row.
            worker_id=None,
            delay_ms=None,
            execution_ms=None,
            cold_start_ms=None,
            cost_usd=None,
            next_poll_at=None,
            cancel_requested_at=None,
            unreachable_since=None,
            poll_count=0,
            failure_kind=None,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.rollback()
        return False
    for attempt in job.attempts:
        if attempt.state in (AttemptState.SENT, AttemptState.UNKNOWN, AttemptState.CLAIMED):
            attempt.state = AttemptState.SUPERSEDED
    session.commit()
    session.expire(job)
    if job.output_key:
        services.storage.delete(job.output_key)
    services.enqueue("tasks.submit", job.id)
    return True


def auto_retry(session: Session, job: Job, services: Services) -> bool:
    """Retry, once per job, a failure that was the app's own (``AUTO_RETRY_KINDS``): the
    worker could not reach the app's storage or claim URL. True when it was retried."""
    if job.status != Status.FAILED or job.failure_kind not in AUTO_RETRY_KINDS:
        return False
    # Take the one automatic retry atomically: a poll and a webhook may both get here.
    taken = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.auto_retries == 0, Job.status == Status.FAILED)
        .values(auto_retries=1, version=Job.version + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    session.refresh(job)
    if taken != 1:
        return False
    # Refused (the input is gone) or the job changed: it stays failed, with its words.
    return refusal(job, services) is None and restart(session, job, services)
