"""Per-job tasks: submit, poll, cancel, cancel a duplicate."""

from __future__ import annotations

from app import polling, reconcile, submission
from app.db import session_scope
from app.models import Job
from tasks import context
from tasks.base import task


@task("tasks.submit", max_retries=10)
def submit(job_id: str) -> str:
    settings, storage = context.get_settings(), context.get_storage()
    with session_scope() as session:
        outcome = submission.submit(
            session, job_id, settings=settings, storage=storage, api=context.api()
        )
        job = session.get(Job, job_id)
        if job is not None and job.status in polling.POLLED:
            if job.cancel_requested_at is not None:
                context.enqueue("tasks.cancel", job.id)  # asked while POST /run was under way
            polling.schedule_poll(session, job, context.enqueue, polling.first_delay(settings))
        return outcome


@task("tasks.poll")
def poll(job_id: str, seq: int) -> str:
    with session_scope() as session:
        return polling.poll(
            session,
            job_id,
            seq,
            settings=context.get_settings(),
            storage=context.get_storage(),
            api=context.status_api(),
            budget=context.budget(),
            enqueue=context.enqueue,
        )


@task("tasks.cancel")
def cancel(job_id: str) -> str:
    with session_scope() as session:
        return reconcile.cancel(
            session,
            job_id,
            settings=context.get_settings(),
            storage=context.get_storage(),
            api=context.api(),
            enqueue=context.enqueue,
        )


@task("tasks.cancel_remote")
def cancel_remote(runpod_id: str) -> str:
    reconcile.cancel_remote(context.api(), runpod_id)
    return f"cancelled duplicate {runpod_id}"
