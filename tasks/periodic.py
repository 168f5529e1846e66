"""Beat's tasks (reconcile every ``RECONCILE_INTERVAL_S``, cleanup hourly) and admin ones."""

from __future__ import annotations

from app.db import session_scope
from app.endpoints.diagnosis import queue_words
from app.endpoints.health import refresh_snapshot
from app.lifecycle import reconcile as sweeps
from app.models import Job, Status
from app.services import services
from tasks.base import task


@task("tasks.reconcile", acks_late=False, soft_time_limit=50, time_limit=58)
def reconcile() -> dict:
    # Early ack: a sweep lost with its worker is simply the next sweep; never re-run twice.
    with session_scope() as session:
        return sweeps.reconcile(session, services())


@task("tasks.cleanup", acks_late=False, soft_time_limit=300, time_limit=330)
def cleanup() -> dict:
    with session_scope() as session:
        return sweeps.cleanup(session, services())


@task("tasks.refresh_endpoint")
def refresh_endpoint() -> str:
    with session_scope() as session:
        queued = session.query(Job).filter(Job.status == Status.IN_QUEUE).count()
        data = refresh_snapshot(session, services().settings, services().api, queued)
    # The task decorator logs this at INFO: one short line, not the whole snapshot (workers'
    # log tails run to thousands of characters; pages read them from the snapshot row).
    summary = queue_words(data.get("health"), data.get("workers"))
    problem = data.get("error") or data.get("diagnosis")
    return f"workers: {summary}" + (f"; {problem[:200]}" if problem else "")


@task("tasks.purge_queue", acks_late=False)
def purge_queue() -> dict:
    # Early ack: purge-queue is not idempotent in effect (RunPod allows 2 per 10 s).
    with session_scope() as session:
        return sweeps.purge(session, services())
