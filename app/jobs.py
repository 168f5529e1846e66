"""The jobs service: create, cancel and retry jobs, and describe them in words.

Pages, the JSON API and the CLI all come through here, so each rule lives once: the row is
committed before its submit task is enqueued (a lost message is found by reconcile), and a
job leaves a terminal state only by ``retry``, which starts a new attempt.
"""

from __future__ import annotations

import fnmatch
import mimetypes
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app import pipelines
from app.diagnosis import CHECKING
from app.models import RETRYABLE, AttemptState, Job, Status, utcnow
from app.settings import Settings
from app.status import apply_status
from app.storage import Storage, safe_name

Enqueue = Callable[..., None]


class JobError(Exception):
    """A request the service refuses; ``status_code`` is the HTTP answer."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


def content_type_of(filename: str, declared: str | None) -> str:
    guessed, _ = mimetypes.guess_type(filename)
    return (guessed or declared or "application/octet-stream").split(";")[0].strip().lower()


def check_type(content_type: str, settings: Settings) -> None:
    if not any(fnmatch.fnmatch(content_type, pattern) for pattern in settings.allowed_upload_types):
        raise JobError(
            f"files of type {content_type} are not accepted; upload one of: "
            f"{', '.join(settings.allowed_upload_types)}",
            415,
        )


def create_job(
    session: Session,
    settings: Settings,
    storage: Storage,
    *,
    staged_path: str | None,
    filename: str | None,
    declared_type: str | None,
    pipeline_name: str,
    raw_params: dict[str, Any],
    owner: str | None = None,
) -> Job:
    """Check the upload and parameters, move the staged file into storage, commit the row.

    The caller enqueues ``tasks.submit`` after this returns (the row is committed first).
    On any refusal the staged file is left for the caller to discard: nothing is stored.
    """
    if not staged_path or not filename:
        raise JobError("no file: choose a video or image to upload (form field 'file')")
    try:
        pipeline = pipelines.get(pipeline_name, settings.pipelines)
        params = pipelines.parse_free_params(pipeline, raw_params)
    except pipelines.ParamError as exc:
        raise JobError(str(exc)) from None
    content_type = content_type_of(filename, declared_type)
    check_type(content_type, settings)
    if os.path.getsize(staged_path) == 0:
        raise JobError("the file is empty")
    job = Job(
        id=str(uuid.uuid4()),
        status=Status.PENDING,
        pipeline=pipeline.name,
        params=params,
        owner=owner,
        input_name=filename[:255],
        input_content_type=content_type,
    )
    out_type = pipeline.output_content_type or content_type
    extension = mimetypes.guess_extension(out_type) or ".bin"
    job.output_key = f"jobs/{job.id}/output/result{extension}"
    job.output_content_type = out_type
    job.input_key = f"jobs/{job.id}/input/{safe_name(filename)}"
    job.input_size = storage.adopt(staged_path, job.input_key, content_type)
    session.add(job)
    session.commit()
    return job


def cancel_job(
    session: Session, job: Job, *, settings: Settings, storage: Storage, enqueue: Enqueue
) -> None:
    """Cancel now if the endpoint never got the job; otherwise ask a task to cancel it there."""
    if job.terminal:
        raise JobError(f"the job is already {job.status.lower()}", 409)
    if job.status == Status.PENDING or _close_unknown_submit(session, job):
        payload = {"status": "CANCELLED", "reason": "cancelled by you before it reached a GPU"}
        apply_status(session, job, payload, "user", settings=settings, storage=storage)
        if session.get(Job, job.id).status == Status.CANCELLED:
            return
    job.cancel_requested_at = utcnow()
    session.commit()
    enqueue("tasks.cancel", job.id)


def _close_unknown_submit(session: Session, job: Job) -> bool:
    """A submit whose outcome is unknown and that no worker claimed can be cancelled here
    and now: its attempt is closed, so a lost RunPod job that reaches a worker later is
    refused by the claim (``app.claims``). False when a worker claimed it first."""
    from app.claims import close_unclaimed

    attempt = job.attempts[-1] if job.attempts else None
    if job.status != Status.SUBMITTING or attempt is None or attempt.state != AttemptState.UNKNOWN:
        return False
    if close_unclaimed(session, attempt, AttemptState.SUPERSEDED, "cancelled by you"):
        session.commit()
        return True
    session.rollback()
    return False


def retry_job(session: Session, job: Job, *, storage: Storage, enqueue: Enqueue) -> None:
    """Start a new attempt for a failed, cancelled or timed-out job."""
    if job.status not in RETRYABLE:
        raise JobError("only failed, cancelled or timed-out jobs can be retried", 409)
    if job.files_deleted_at or not job.input_key or not storage.exists(job.input_key):
        raise JobError("the input file was deleted by retention; upload it again", 409)
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_([s.value for s in RETRYABLE]))
        .values(
            status=Status.PENDING,
            version=Job.version + 1,
            runpod_id=None,
            error=None,
            error_detail=None,
            diagnosis=None,
            progress=None,
            result=None,
            output_size=None,
            finished_at=None,
            started_at=None,
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
        raise JobError("the job changed meanwhile; reload the page", 409)
    for attempt in job.attempts:
        if attempt.state in (AttemptState.SENT, AttemptState.UNKNOWN, AttemptState.CLAIMED):
            attempt.state = AttemptState.SUPERSEDED
    session.commit()
    session.expire(job)
    if job.output_key:
        storage.delete(job.output_key)
    enqueue("tasks.submit", job.id)


def auto_retry(session: Session, job: Job, *, storage: Storage, enqueue: Enqueue) -> bool:
    """Retry, once per job, a failure that was the app's own (``AUTO_RETRY_KINDS``): the
    worker could not reach the app's storage or claim URL. True when it was retried."""
    from app.status import AUTO_RETRY_KINDS

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
    try:
        retry_job(session, job, storage=storage, enqueue=enqueue)
    except JobError:
        return False  # the input is gone, or the job changed: it stays failed, with its words
    return True


@dataclass(frozen=True)
class Description:
    phase: str  # queued | starting | running | done | failed | cancelled
    headline: str  # what is happening, in words
    detail: str | None  # why, and what to do
    tone: str  # info | ok | warn | bad


def describe(job: Job) -> Description:
    """The job's status in words a person understands."""
    status = Status(job.status)
    if job.cancel_requested_at and not job.terminal:
        return Description(
            "cancelling", "cancelling: asking the GPU endpoint to stop it", None, "warn"
        )
    if status == Status.PENDING:
        if job.diagnosis:
            return Description(
                "queued", "waiting: the GPU endpoint is unreachable", job.diagnosis, "warn"
            )
        return Description("queued", "queued: waiting to be sent to the GPU endpoint", None, "info")
    if status == Status.SUBMITTING:
        return Description("queued", "sending the job to the GPU endpoint", job.diagnosis, "info")
    if status == Status.IN_QUEUE:
        if job.diagnosis == CHECKING:
            return Description("starting", "checking with the GPU endpoint", CHECKING, "info")
        if job.diagnosis:
            return Description("starting", "waiting for a GPU worker", job.diagnosis, "warn")
        return Description(
            "starting",
            "queued at the GPU endpoint: a GPU worker is starting (cold start)",
            None,
            "info",
        )
    if status == Status.IN_PROGRESS:
        percent = (job.progress or {}).get("percent")
        words = "running on a GPU"
        if isinstance(percent, int | float):
            words += f" ({percent:.0f}%)"
        return Description("running", words, job.diagnosis, "info")
    if status == Status.COMPLETED:
        return Description("done", "done", None, "ok")
    if status == Status.CANCELLED:
        return Description("cancelled", "cancelled", job.error, "warn")
    if status == Status.TIMED_OUT:
        return Description("failed", "timed out", job.error, "bad")
    return Description("failed", "failed", job.error or "no reason was given", "bad")


def timings(job: Job) -> dict[str, Any]:
    """Queue delay, execution time, cold start and estimated cost, where known."""
    return {
        "queue_delay_s": None if job.delay_ms is None else job.delay_ms / 1000,
        "execution_s": None if job.execution_ms is None else job.execution_ms / 1000,
        "cold_start_s": None if job.cold_start_ms is None else job.cold_start_ms / 1000,
        "cost_usd": job.cost_usd,
    }
