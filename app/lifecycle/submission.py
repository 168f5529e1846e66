"""Submitting a job to the endpoint without ever executing it twice (DESIGN invariant 3).

1. Claim: ``UPDATE jobs SET status='SUBMITTING' WHERE id=? AND status='PENDING'``; only
   the caller that changed the row goes on (a re-delivered or duplicate message stops).
2. Record an Attempt (CLAIMED), then mark it UNKNOWN *before* POST /run: from then on the
   endpoint may have the job, and only reconciliation or the endpoint itself can say.
3. POST /run with signed input/output URLs, the webhook URL and the policy. The answer's
   id goes through ``apply_status``, which makes the attempt SENT.
4. A failure that provably sent nothing (connection refused, 429) releases the claim
   (PENDING again) and the task retries with backoff; ``SubmitOutcomeUnknown`` leaves the
   attempt UNKNOWN for reconcile; Not Found marks the job "endpoint unreachable" until the
   grace period ends.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import update
from sqlalchemy.orm import Session

from app import pipelines, signing
from app.endpoints import billing, breaker, budgets
from app.lifecycle.claims import close_unclaimed
from app.lifecycle.status import apply_status, mark_unreachable
from app.models import Attempt, AttemptState, Job, Status, utcnow
from app.services import (
    EndpointNotFound,
    EndpointUnreachable,
    JobAPIError,
    RateLimited,
    Services,
    SubmitOutcomeUnknown,
)
from app.settings import Settings
from app.storage import Storage

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """Nothing was sent; the task should run again after a backoff."""


def crash_point(settings: Settings, name: str) -> None:
    """APP_ENV=test only: at ``name``, once, SIGKILL this pool process (``TEST_CRASH_AT=name``)
    or the whole worker with its process group (``TEST_CRASH_AT=name:worker``)."""
    point, _, scope = settings.test_crash_at.partition(":")
    if settings.app_env != "test" or point != name:
        return
    marker = Path(settings.storage_dir) / f".crashed-{name}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    if scope == "worker":
        os.killpg(os.getpgid(0), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def claim(session: Session, job_id: str) -> bool:
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == Status.PENDING)
        .values(status=Status.SUBMITTING, version=Job.version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1


def callback_url(settings: Settings, attempt_id: int, kind: str) -> str:
    """The signed URL a worker POSTs ``kind`` ("claim", "progress") of attempt ``attempt_id`` to."""
    path = f"callbacks/{attempt_id}/{kind}"
    query = signing.sign(settings.secret_key, "POST", path, settings.signed_url_ttl_s)
    return f"{settings.public_base_url.rstrip('/')}/{path}?{urlencode(query)}"


def worker_input(
    job: Job, settings: Settings, storage: Storage, attempt: Attempt | None = None
) -> dict[str, Any]:
    """The GPU worker's input (contract 2): URLs only, never file bytes (invariant 6).
    With ``attempt``, the worker claims it before running (``app.lifecycle.claims``)."""
    ttl = settings.signed_url_ttl_s
    payload: dict[str, Any] = {
        "pipeline": job.pipeline,
        "params": job.params or {},
        "inputs": {},
        "job_key": job.id,
    }
    if attempt is not None:
        payload["callbacks"] = {
            kind: callback_url(settings, attempt.id, kind) for kind in ("claim", "progress")
        }
    if job.input_key:
        payload["inputs"][pipelines.input_name(job.pipeline)] = storage.get_url(job.input_key, ttl)
    if job.output_key:
        payload["output"] = {
            "put_url": storage.put_url(job.output_key, job.output_content_type or "", ttl),
            "content_type": job.output_content_type,
        }
    return payload


def webhook_url(job: Job, settings: Settings) -> str | None:
    if not settings.use_webhooks:
        return None
    return f"{settings.webhook_root}/webhooks/{job.id}/{job.webhook_token}"


def policy(settings: Settings) -> dict[str, int]:
    return {
        "executionTimeout": settings.execution_timeout_s * 1000,
        "ttl": settings.job_ttl_s * 1000,
    }


def back_to_pending(session: Session, job: Job, reason: str) -> bool:
    """Nothing was sent (or no worker claimed what was): fail the open attempts and make the
    job PENDING again, only if nobody changed it meanwhile (a cancel, or a claim arriving)."""
    for attempt in list(job.attempts):
        if attempt.state in (AttemptState.CLAIMED, AttemptState.UNKNOWN):
            if not close_unclaimed(session, attempt, AttemptState.FAILED, reason):
                session.rollback()  # a worker claimed it: it runs, the caller adopts it
                return False
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == Status.SUBMITTING, Job.version == job.version)
        .values(status=Status.PENDING, version=Job.version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.rollback()
        return False
    session.commit()
    session.refresh(job)  # the update bypassed the ORM: reload status and version
    return True


def hold(session: Session, job_id: str, settings: Settings) -> str | None:
    """Issue 19: a PENDING job whose endpoint's breaker is open, or past a budget, is not
    sent; it stays PENDING with the words why (reconcile and a release send it later)."""
    job = session.get(Job, job_id)
    if job is None or job.status != Status.PENDING:
        return None
    endpoint = billing.endpoint_of(job)
    reason = breaker.pause_reason(session, job, endpoint) or budgets.hold_reason(
        session, settings, job
    )
    if reason is None:
        return None
    if job.diagnosis != reason:
        job.diagnosis = reason
        session.commit()
    return f"held: {reason}"


def submit(session: Session, job_id: str, services: Services) -> str:
    """Submit one job; returns what happened (for logs). ``RetryLater`` asks for a retry."""
    settings, storage = services.settings, services.storage
    held = hold(session, job_id, settings)
    if held:
        return held
    if not claim(session, job_id):
        return "not pending: another task has it, or it was cancelled"
    job = session.get(Job, job_id)
    session.refresh(job)
    endpoint = services.endpoint_of(job)  # the job goes to its pipeline's endpoint
    number = max((a.number for a in job.attempts), default=0) + 1
    attempt = Attempt(job=job, number=number, state=AttemptState.CLAIMED)
    session.add(attempt)
    session.commit()
    crash_point(settings, "after_claim")
    if not settings.configured(endpoint):
        if back_to_pending(session, job, "no endpoint configured"):
            mark_unreachable(session, job, services)
        return "no endpoint configured"
    body = worker_input(job, settings, storage, attempt)
    attempt.state = AttemptState.UNKNOWN  # from here on the endpoint may have the job
    session.commit()
    try:
        answer = services.api_for(endpoint).run(
            body, webhook=webhook_url(job, settings), policy=policy(settings)
        )
    except SubmitOutcomeUnknown as exc:
        attempt.error = str(exc)[:2000]
        session.commit()
        log.warning("job %s: submit outcome unknown; reconcile decides", job.id)
        return "outcome unknown"
    except (EndpointUnreachable, RateLimited) as exc:
        if not back_to_pending(session, job, str(exc)):
            return "nothing sent; the job changed meanwhile (cancelled)"
        raise RetryLater(str(exc)) from exc
    except EndpointNotFound as exc:
        if back_to_pending(session, job, str(exc)):
            mark_unreachable(session, job, services)
        return "endpoint unreachable"
    except JobAPIError as exc:  # Unauthorized, BadRequest: resending will not help
        if getattr(exc, "status_code", None) == 401:  # no job can go: stop sending any
            state = breaker.load(session, billing.endpoint_of(job))
            breaker.trip(session, settings, state, str(exc), breaker.REFUSED)
        attempt.state = AttemptState.FAILED
        attempt.error = str(exc)[:2000]
        session.commit()
        error = f"the GPU endpoint refused the job: {exc}. An operator must fix the setting named."
        apply_status(
            session,
            job,
            {"status": "FAILED", "reason": error},
            "submit",
            services,
        )
        return "refused"
    crash_point(settings, "after_run")
    runpod_id = str(answer.get("id") or "")
    if not runpod_id:
        attempt.error = f"/run answered without an id: {answer!r}"[:2000]
        session.commit()
        return "outcome unknown (no id)"
    status = answer.get("status") if answer.get("status") in Status.__members__ else "IN_QUEUE"
    job.diagnosis = None
    job.unreachable_since = None
    apply_status(
        session,
        job,
        {"id": runpod_id, "status": status},
        "submit",
        services,
    )
    return f"sent as {runpod_id}"
