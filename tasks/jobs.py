"""Per-job tasks: submit, poll, cancel, cancel a duplicate."""

from __future__ import annotations

from app.db import session_scope
from app.endpoints.routing import DEFAULT
from app.lifecycle import polling, reconcile, submission
from app.models import Job
from app.services import services
from tasks.base import task


@task("tasks.submit", max_retries=10)
def submit(job_id: str) -> str:
    with session_scope() as session:
        outcome = submission.submit(session, job_id, services())
        job = session.get(Job, job_id)
        if job is not None and job.status in polling.POLLED:
            if job.cancel_requested_at is not None:
                services().enqueue("tasks.cancel", job.id)  # asked while POST /run was under way
            delay = polling.first_delay(services().settings)
            polling.schedule_poll(session, job, services().enqueue, delay)
        return outcome


@task("tasks.poll")
def poll(job_id: str, seq: int) -> str:
    with session_scope() as session:
        return polling.poll(session, job_id, seq, services())


@task("tasks.cancel")
def cancel(job_id: str) -> str:
    with session_scope() as session:
        return reconcile.cancel(session, job_id, services(), follow_up=True)


@task("tasks.cancel_remote")
def cancel_remote(runpod_id: str, endpoint: str = DEFAULT) -> str:
    # ``endpoint``: the duplicate's endpoint by name (messages sent before it existed: default).
    reconcile.cancel_remote(services().api_for(endpoint), runpod_id)
    return f"cancelled duplicate {runpod_id}"
