"""The one function that applies a RunPod status payload to a job (DESIGN invariant 4).

Polls, webhooks, purge detection and cancels all go through ``apply_status``. It is
idempotent (applying the same payload twice changes nothing) and monotonic (a status only
moves along ``app.models.TRANSITIONS``); a concurrent writer is caught by the job row's
version counter and the payload is re-applied to the fresh row.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import logging
import math
from datetime import timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app import jsonbody
from app.clients.webhooks import announce
from app.endpoints import billing
from app.endpoints.diagnosis import endpoint_unreachable
from app.lifecycle.retry import auto_retry
from app.models import TERMINAL, Attempt, AttemptState, Job, Status, can_move, utcnow
from app.services import Services
from app.settings import Settings
from app.storage import Storage

log = logging.getLogger(__name__)

PURGED = "cancelled: the endpoint no longer knows this job (purged from its queue or expired)"
WHAT_TO_DO_FAILED = (
    "Check the input file and the parameters, then press Retry. If it fails again, an operator "
    "can read the worker's log lines on the admin dashboard."
)


class Outcome(enum.StrEnum):
    APPLIED = "applied"  # the job changed
    UNCHANGED = "unchanged"  # already in that state: nothing to do (idempotent re-delivery)
    STALE = "stale"  # an older status than the job's; ignored (monotonic)
    DUPLICATE = "duplicate"  # a payload for a RunPod job that is not this job's current one


# The timing columns are 32-bit integers; a figure past this (24.8 days) is not a timing.
MAX_MS = 2**31 - 1
TIMINGS = ("delayTime", "executionTime", "coldStartMs", "coldStartTime")


class PayloadError(ValueError):
    """The payload is not a RunPod status (the webhook answers 400)."""


def apply_status(
    session: Session,
    job: Job,
    payload: dict[str, Any],
    source: str,
    services: Services,
    *,
    retry_own_failure: bool = False,
) -> Outcome:
    """Apply ``payload`` (``{"id", "status", "output"|"error", "delayTime", ...}``) to ``job``
    and commit. ``source`` ("poll", "webhook", "submit", "reconcile", ...) is logged. With
    ``retry_own_failure``, a failure that was the app's own (``AUTO_RETRY_KINDS``) is retried
    once."""
    status = payload.get("status")
    if not isinstance(status, str) or status not in Status.__members__:
        raise PayloadError(f"unknown status {status!r}")
    for name in TIMINGS:
        value = payload.get(name)
        if isinstance(value, float) and not (math.isfinite(value) and value <= MAX_MS):
            raise PayloadError(f"{name}={value!r} is not a duration in milliseconds")
    for _ in range(5):
        was = job.status
        try:
            outcome = _apply(
                session, job, payload, Status(status), services.settings, services.storage
            )
            if outcome != Outcome.DUPLICATE:
                _mirror_on_attempt(job)
            session.commit()
        except StaleDataError:
            session.rollback()
            session.refresh(job)
            continue
        except (sa_exc.StatementError, UnicodeError, OverflowError) as exc:
            if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
                raise  # the database is unreachable: the caller retries later
            session.rollback()
            return _fail_unstorable(session, job, status, source, exc, services)
        log.info("job %s: %s %s from %s", job.id, outcome, status, source)
        if retry_own_failure and outcome == Outcome.APPLIED:
            auto_retry(session, job, services)
        if outcome == Outcome.APPLIED:
            announce(session, job, was, services)
        return outcome
    raise RuntimeError(f"job {job.id}: could not apply {status} after 5 concurrent updates")


def _fail_unstorable(
    session: Session,
    job: Job,
    status: str,
    source: str,
    exc: BaseException,
    services: Services,
) -> Outcome:
    """The database refused what a status carried (``app.storable`` cleans text, so this is
    a value nothing foresaw): end the job FAILED, saying so, rather than leave it running
    while every poll fails on the same error."""
    cause = type(getattr(exc, "orig", None) or exc).__name__
    log.warning("job %s: %s from %s could not be stored (%s)", job.id, status, source, cause)
    session.refresh(job)
    reason = (
        f"failed: the endpoint's {status} report for this job holds a value the database "
        f"cannot store ({cause}). Press Retry; if it happens again, an operator can read the "
        "worker's log lines on the admin dashboard."
    )
    failed = {"status": "FAILED", "reason": reason}
    outcome = _apply(session, job, failed, Status.FAILED, services.settings, services.storage)
    _mirror_on_attempt(job)
    session.commit()
    return outcome


def _check_identity(job: Job, runpod_id: str | None) -> bool:
    """True when the payload is about this job's current RunPod job.

    A payload naming another id is a duplicate unless the current attempt never learned its
    id (the submit crashed after POST /run, or its outcome was unknown): then the payload,
    which reached us through this job's secret webhook URL or a poll by id, names the job
    that attempt created, and the attempt adopts it.
    """
    if not runpod_id or runpod_id == job.runpod_id:
        return True
    attempt = job.current_attempt
    known = any(other.runpod_id == runpod_id for other in job.attempts)
    if (
        not known
        and job.runpod_id is None
        and attempt is not None
        and attempt.runpod_id is None
        and attempt.state in (AttemptState.CLAIMED, AttemptState.UNKNOWN)
        and attempt.claimed_runpod_id in (None, runpod_id)  # a claim names the one it sent
    ):
        attempt.state = AttemptState.SENT
        attempt.runpod_id = runpod_id
        job.runpod_id = runpod_id
        return True
    for other in job.attempts:
        if other.runpod_id == runpod_id and other.state == AttemptState.SENT:
            other.state = AttemptState.DUPLICATE
    return False


def _apply(
    session: Session,
    job: Job,
    payload: dict[str, Any],
    new: Status,
    settings: Settings,
    storage: Storage,
) -> Outcome:
    if not _check_identity(job, payload.get("id")):
        return Outcome.DUPLICATE
    current = Status(job.status)
    _record_timings(job, payload, settings, final=new in TERMINAL)
    if new == current:
        if new == Status.IN_PROGRESS and _record_progress(job, payload):
            return Outcome.APPLIED
        return Outcome.UNCHANGED
    if not can_move(current, new):
        return Outcome.STALE
    now = utcnow()
    if new == Status.IN_PROGRESS:
        job.started_at = job.started_at or now
        job.diagnosis = None  # a worker took it: whatever held it in the queue is over
        _record_progress(job, payload)
    elif new == Status.COMPLETED:
        new = _take_result(job, payload, storage)
    elif new == Status.FAILED:
        if payload.get("reason"):
            job.error = str(payload["reason"])
        else:
            _record_failure(job, payload)
        job.failure_kind = failure_kind(payload)
    elif new == Status.TIMED_OUT:
        job.error = (
            f"timed out: the job waited longer than its time to live ({settings.job_ttl_s} s) "
            f"or ran longer than the execution timeout ({settings.execution_timeout_s} s). "
            "Try a shorter input, or ask an operator to raise EXECUTION_TIMEOUT_S, then Retry."
        )
    elif new == Status.CANCELLED:
        job.error = payload.get("reason") or job.error or "cancelled"
    job.status = new
    if new in TERMINAL:
        job.finished_at = now
        job.next_poll_at = None
        job.diagnosis = None if new == Status.COMPLETED else job.diagnosis
        job.unreachable_since = None
    if new in (Status.IN_QUEUE, Status.IN_PROGRESS):
        job.submitted_at = job.submitted_at or now
    return Outcome.APPLIED


def _mirror_on_attempt(job: Job) -> None:
    """Copy the job's figures (the current attempt's) onto that attempt's row, so they stay
    listed on the page after a retry clears the job's."""
    attempt = job.current_attempt
    if attempt is None:
        return
    for name in ("worker_id", "started_at", "delay_ms", "execution_ms", "cost_usd"):
        value = getattr(job, name)
        if value is not None and getattr(attempt, name) != value:
            setattr(attempt, name, value)
    if job.terminal and attempt.outcome is None:
        attempt.outcome = job.status
        attempt.finished_at = job.finished_at
        if job.status != Status.COMPLETED and job.error and not attempt.error:
            attempt.error = job.error[:2000]


def _milliseconds(value: Any) -> int | None:
    """A payload's timing as whole milliseconds, or None for anything that is not one
    (a string, a bool, a negative figure, ``1e308``, ``Infinity``, ``NaN``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= MAX_MS:
        return None
    return int(value)


def _record_timings(job: Job, payload: dict[str, Any], settings: Settings, *, final: bool) -> None:
    delay = _milliseconds(payload.get("delayTime"))
    execution = _milliseconds(payload.get("executionTime"))
    if delay is not None:
        job.delay_ms = delay
    # An IN_PROGRESS status carries the execution time so far: stored, it would read as the
    # final figure and freeze the page's ticking clock. Only a terminal status's is kept.
    if final and execution is not None:
        job.execution_ms = execution
        # An estimate until the bill is read (app.endpoints.billing); the bill, which adds
        # start-up to the run, is never below it, so the larger figure is the better one.
        estimate = round(execution / 1000 * billing.price(settings, job.endpoint), 6)
        job.cost_usd = max(job.cost_usd or 0.0, estimate)
    if isinstance(payload.get("workerId"), str):
        job.worker_id = payload["workerId"][:128]
    cold = _milliseconds(payload.get("coldStartMs", payload.get("coldStartTime")))
    if cold is not None:
        job.cold_start_ms = cold


def _record_progress(job: Job, payload: dict[str, Any]) -> bool:
    output = payload.get("output")
    if output is None:
        return False
    progress = output if isinstance(output, dict) else {"message": str(output)[:500]}
    if progress == job.progress:
        return False
    job.progress = progress
    return True


def _take_result(job: Job, payload: dict[str, Any], storage: Storage) -> Status:
    """Record a COMPLETED payload's result; a result that cannot be taken fails the job."""
    output = payload.get("output")
    if isinstance(output, dict) and output.get("error") and "output" not in output:
        # A handler that returns {"error": ...} ends COMPLETED on RunPod; it is a failure.
        _record_failure(job, {"error": output["error"]})
        job.failure_kind = failure_kind({"output": output})
        return Status.FAILED
    if not (isinstance(output, dict) and isinstance(output.get("output"), dict)):
        job.result = output if isinstance(output, dict) else {"value": output}
        job.output_key = None
        job.progress = None
        return Status.COMPLETED
    files = output["output"]
    job.result = {k: output.get(k) for k in ("pipeline", "result", "metrics") if k in output}
    metrics = output.get("metrics") if isinstance(output.get("metrics"), dict) else {}
    load_s = metrics.get("model_load_s")
    if isinstance(load_s, int | float) and load_s > 0 and job.cold_start_ms is None:
        # The worker loaded the model for this job: it started cold (warm workers report 0).
        job.cold_start_ms = int(load_s * 1000)
    job.progress = None
    content_type = str(files.get("content_type") or job.output_content_type or "")
    if files.get("inline_b64"):
        try:
            data = base64.b64decode(files["inline_b64"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            job.error = "the GPU worker returned a corrupt result (invalid base64). Press Retry."
            return Status.FAILED
        job.output_size = storage.save_bytes(job.output_key, data, content_type or None)
    elif files.get("url"):
        size = storage.size(job.output_key) if job.output_key else None
        if size is None:
            job.error = (
                "the GPU worker reported an uploaded result but no file arrived in storage. "
                "Press Retry; if it happens again an operator should check that the worker can "
                "reach PUBLIC_BASE_URL (or the S3 endpoint)."
            )
            return Status.FAILED
        job.output_size = size
    else:
        job.output_key = None
    if content_type:
        job.output_content_type = content_type[:128]
    return Status.COMPLETED


def failure_kind(payload: dict[str, Any]) -> str | None:
    """The worker's ``error_kind``: next to the error in ``output`` (what the runpod SDK
    keeps of a handler's ``{"error", "error_kind"}``) or inside a JSON error object."""
    output = payload.get("output")
    kind = output.get("error_kind") if isinstance(output, dict) else None
    raw = payload.get("error")
    if kind is None and isinstance(raw, str) and raw.startswith("{"):
        try:
            raw = jsonbody.loads(raw)
        except jsonbody.JSONError:
            raw = None
    if kind is None and isinstance(raw, dict):
        kind = raw.get("error_kind")
    return kind[:32] if isinstance(kind, str) and kind else None


def _record_failure(job: Job, payload: dict[str, Any]) -> None:
    raw = payload.get("error")
    detail = raw if isinstance(raw, str) else json.dumps(raw)
    message = detail
    if isinstance(raw, str):
        try:
            parsed = jsonbody.loads(raw)
        except jsonbody.JSONError:
            parsed = None
        raw = parsed if isinstance(parsed, dict) else raw
    if isinstance(raw, dict):
        kind = raw.get("error_type") or ""
        message = str(raw.get("error_message") or raw.get("message") or raw)
        if kind:
            message = f"{kind.rsplit('.', 1)[-1].strip(chr(39) + '>')}: {message}"
        detail = raw.get("error_traceback") or detail
    message = (message or "no reason given")[:1000]
    if isinstance(raw, dict):
        job.error = f"failed: the GPU handler reported an error: {message}. {WHAT_TO_DO_FAILED}"
    else:
        job.error = f"failed: {message.rstrip('.')}. {WHAT_TO_DO_FAILED}"
    job.error_detail = (detail or "")[:20000]


def apply_progress(
    session: Session,
    job: Job,
    attempt: Attempt,
    progress: dict[str, Any],
    *,
    worker_id: str | None = None,
    runpod_id: str | None = None,
    services: Services | None = None,
) -> Outcome:
    """Apply a worker's progress callback for ``attempt`` to ``job`` and commit.

    The first one makes the job IN_PROGRESS (a worker has it), along ``TRANSITIONS`` like
    any status. STALE when the attempt is no longer the job's current one or the job has
    ended (the callback answers 410 and the worker stops sending); DUPLICATE when it comes
    from a RunPod job other than the attempt's.
    """
    for _ in range(5):
        was = job.status
        try:
            outcome = _apply_progress(job, attempt, progress, worker_id, runpod_id)
            if outcome in (Outcome.APPLIED, Outcome.UNCHANGED):
                _mirror_on_attempt(job)
            session.commit()
        except StaleDataError:
            session.rollback()
            session.refresh(job)
            session.refresh(attempt)
            continue
        # One line when a worker takes the job; the once-a-second updates only at DEBUG.
        level = logging.INFO if job.status != was else logging.DEBUG
        log.log(level, "job %s: progress %s from worker %s", job.id, outcome, worker_id)
        if services is not None and outcome == Outcome.APPLIED:
            announce(session, job, was, services)  # Prefer: wait, webhooks (issue 20)
        return outcome
    raise RuntimeError(f"job {job.id}: could not apply progress after 5 concurrent updates")


def _apply_progress(
    job: Job,
    attempt: Attempt,
    progress: dict[str, Any],
    worker_id: str | None,
    runpod_id: str | None,
) -> Outcome:
    if job.terminal or job.current_attempt is not attempt:
        return Outcome.STALE
    if attempt.state in (AttemptState.SUPERSEDED, AttemptState.DUPLICATE, AttemptState.FAILED):
        return Outcome.STALE
    if runpod_id and attempt.runpod_id and runpod_id != attempt.runpod_id:
        return Outcome.DUPLICATE
    changed = False
    if job.status != Status.IN_PROGRESS:
        if not can_move(job.status, Status.IN_PROGRESS):
            return Outcome.STALE
        now = utcnow()
        job.status = Status.IN_PROGRESS
        job.started_at = job.started_at or now
        job.submitted_at = job.submitted_at or now
        job.diagnosis = None  # a worker took it: whatever held it in the queue is over
        changed = True
    if worker_id and job.worker_id != worker_id[:128]:
        job.worker_id = worker_id[:128]
        changed = True
    if progress != job.progress:
        job.progress = progress
        changed = True
    return Outcome.APPLIED if changed else Outcome.UNCHANGED


def purged_payload(runpod_id: str | None) -> dict[str, Any]:
    return {"id": runpod_id, "status": "CANCELLED", "reason": PURGED}


def mark_unreachable(session: Session, job: Job, services: Services) -> bool:
    """Show "endpoint unreachable" on the job; fail it once the grace period has passed.
    Returns True when the job failed."""
    settings = services.settings
    now = utcnow()
    job.unreachable_since = job.unreachable_since or now
    name = services.endpoint_of(job)
    job.diagnosis = endpoint_unreachable(
        services.fleet.get(name).endpoint_id, settings.endpoint_unreachable_grace_s, name
    )
    session.commit()
    since = job.unreachable_since
    if since.tzinfo is None:
        since = since.replace(tzinfo=now.tzinfo)
    if now - since < timedelta(seconds=settings.endpoint_unreachable_grace_s):
        return False
    payload = {"status": "FAILED", "reason": job.diagnosis}
    apply_status(session, job, payload, "unreachable", services)
    return True
