"""Beat's tasks (reconcile every ``RECONCILE_INTERVAL_S``, cleanup hourly) and admin ones."""

from __future__ import annotations

from app.db import session_scope
from app.endpoints.diagnosis import queue_words
from app.endpoints.health import refresh_snapshots
from app.endpoints.routing import DEFAULT
from app.lifecycle import reconcile as sweeps
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
        snapshots = refresh_snapshots(session, services())
    # The task decorator logs this at INFO: one short line per endpoint, not the whole
    # snapshot (workers' log tails run to thousands of characters; pages read the rows).
    lines = []
    for name, data in snapshots.items():
        summary = queue_words(data.get("health"), data.get("workers"))
        problem = data.get("error") or data.get("diagnosis")
        lines.append(f"{name}: workers: {summary}" + (f"; {problem[:200]}" if problem else ""))
    return " | ".join(lines) or "no endpoint configured"


@task("tasks.purge_queue", acks_late=False)
def purge_queue(endpoint: str = DEFAULT) -> dict:
    # Early ack: purge-queue is not idempotent in effect (RunPod allows 2 per 10 s).
    with session_scope() as session:
        return sweeps.purge(session, services(), endpoint)
