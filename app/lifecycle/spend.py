"""Issue 19 in the lifecycle: read the bill, watch for crash loops, and take back from a
tripped endpoint the jobs it holds queued (so its workers stop starting for them).

``sweep`` runs from ``tasks.spend`` (beat, every ``RECONCILE_INTERVAL_S``) after reconcile
has refreshed the snapshot; tests and the bench call it in-process.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.endpoints import billing, breaker, budgets
from app.endpoints.health import load_snapshot
from app.lifecycle.retry import restart
from app.lifecycle.status import apply_status
from app.models import Job, Status
from app.services import JobAPIError, Services

log = logging.getLogger(__name__)


def sweep(session: Session, services: Services) -> dict[str, int]:
    """For each configured endpoint: refresh the bill; trip the breaker on a crash loop
    (from the snapshot reconcile stored) and take its queued jobs back."""
    settings = services.settings
    counts = {"costs": 0, "tripped": 0, "taken_back": 0}
    for endpoint in services.fleet.names:
        if not settings.configured(endpoint):
            continue
        api = services.api_for(endpoint)
        counts["costs"] += billing.refresh(session, settings, api, endpoint)
        snapshot = load_snapshot(session, endpoint)
        tripped = breaker.observe(session, settings, snapshot, endpoint)
        if tripped:
            counts["tripped"] += 1
            counts["taken_back"] += take_back(session, services, tripped)
    return counts


def take_back(session: Session, services: Services, state: breaker.State) -> int:
    """Cancel at the endpoint this app's jobs still IN_QUEUE there (no worker took them:
    nothing running is stopped) and hold them here with the breaker's words; resume sends
    them again as new attempts. Returns how many came back."""
    jobs = session.scalars(
        select(Job).where(Job.status == Status.IN_QUEUE, Job.runpod_id.is_not(None))
    ).all()
    taken = 0
    for job in jobs:
        if billing.endpoint_of(job) != state.endpoint:
            continue
        try:
            api = services.api_for(state.endpoint)
            if api.status(job.runpod_id).get("status") != Status.IN_QUEUE:
                continue
            api.cancel(job.runpod_id)
        except JobAPIError as exc:
            log.warning("breaker: cannot take job %s back: %s", job.id, exc)
            continue
        payload = {"id": job.runpod_id, "status": "CANCELLED", "reason": state.words}
        apply_status(session, job, payload, "breaker", services)
        if job.status == Status.CANCELLED and restart(session, job, services):
            job.diagnosis = state.words
            session.commit()
            taken += 1
    return taken


def release_held(session: Session, services: Services) -> list[str]:
    """Let every job a budget holds go once (``flask admin budget --release``)."""
    ids = budgets.release(session, budgets.held_jobs(session))
    for job_id in ids:
        services.enqueue("tasks.submit", job_id)
    return ids


def send_held(session: Session, services: Services) -> int:
    """After a budget was raised: ask each held job's submit again (it re-checks)."""
    jobs = budgets.held_jobs(session)
    for job in jobs:
        services.enqueue("tasks.submit", job.id)
    return len(jobs)


def resume(session: Session, services: Services, endpoint: str) -> breaker.State:
    """Close ``endpoint``'s breaker (``flask admin resume``, the dashboard's button): the
    oldest held job goes first as the probe; the others are sent once it completes
    (``breaker.pause_reason``), by reconcile's re-enqueue of PENDING jobs or right here."""
    state = breaker.resume(session, services.settings, endpoint)
    for job in breaker.held_jobs(session, endpoint):
        services.enqueue("tasks.submit", job.id)
    return state
