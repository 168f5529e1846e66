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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app import media, pipelines
from app.diagnosis import CHECKING
from app.live import Live
from app.models import RETRYABLE, AttemptState, Job, Status, utcnow
from app.services import Services
from app.settings import Settings
from app.status import WHAT_TO_DO_FAILED, apply_status
from app.storable import display_name
from app.storage import safe_name


def find_job(session: Session, job_id: str) -> Job | None:
    """The job ``job_id`` names, or None (ids are UUIDs: longer ones are not even looked up)."""
    return session.get(Job, job_id) if len(job_id) <= 36 else None


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
    services: Services,
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
    settings = services.settings
    if not staged_path or not filename:
        raise JobError("no file: choose a video or image to upload (form field 'file')")
    try:
        pipeline = pipelines.get(pipeline_name, settings.pipelines, settings)
        params = pipeline.parse_params(raw_params)
    except pipelines.ParamError as exc:
        raise JobError(str(exc)) from None
    content_type = content_type_of(filename, declared_type)
    check_type(content_type, settings)
    if os.path.getsize(staged_path) == 0:
        raise JobError("the file is empty")
    kind = "any"
    if not pipeline.takes("any"):
        info = media.probe(staged_path)
        if info is None:
            raise JobError(pipeline.unreadable(content_type.split("/")[0]), 415)
        kind = info.kind
        if not pipeline.takes(kind):
            raise JobError(pipeline.refusal(kind), 415)
        if kind == "image" and info.codec not in media.IMAGE_CODECS:
            raise JobError(f"this is a {info.codec} image; upload PNG, JPEG or WebP", 415)
    job = Job(
        id=str(uuid.uuid4()),
        status=Status.PENDING,
        pipeline=pipeline.name,
        params=params,
        owner=owner,
        input_name=display_name(filename)[:255],  # no RTL override or NUL reaches a page
        input_content_type=content_type,
    )
    out_type = pipeline.output_type(kind, content_type)
    extension = mimetypes.guess_extension(out_type) or ".bin"
    job.output_key = f"jobs/{job.id}/output/result{extension}"
    job.output_content_type = out_type
    job.input_key = f"jobs/{job.id}/input/{safe_name(filename)}"
    job.input_size = services.storage.adopt(staged_path, job.input_key, content_type)
    session.add(job)
    session.commit()
    return job


def cancel_job(session: Session, job: Job, services: Services) -> None:
    """Cancel now if the endpoint never got the job; otherwise ask a task to cancel it there."""
    if job.terminal:
        raise JobError(f"the job is already {job.status.lower()}", 409)
    if job.status == Status.PENDING or _close_unknown_submit(session, job):
        payload = {"status": "CANCELLED", "reason": "cancelled by you before it reached a GPU"}
        apply_status(session, job, payload, "user", services)
        if session.get(Job, job.id).status == Status.CANCELLED:
            return
    job.cancel_requested_at = utcnow()
    session.commit()
    services.enqueue("tasks.cancel", job.id)


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


def retry_job(session: Session, job: Job, services: Services) -> None:
    """Start a new attempt for a failed, cancelled or timed-out job."""
    if job.status not in RETRYABLE:
        raise JobError("only failed, cancelled or timed-out jobs can be retried", 409)
    if job.files_deleted_at or not job.input_key or not services.storage.exists(job.input_key):
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
        raise JobError("the job changed meanwhile; reload the page", 409)
    for attempt in job.attempts:
        if attempt.state in (AttemptState.SENT, AttemptState.UNKNOWN, AttemptState.CLAIMED):
            attempt.state = AttemptState.SUPERSEDED
    session.commit()
    session.expire(job)
    if job.output_key:
        services.storage.delete(job.output_key)
    services.enqueue("tasks.submit", job.id)


def auto_retry(session: Session, job: Job, services: Services) -> bool:
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
        retry_job(session, job, services)
    except JobError:
        return False  # the input is gone, or the job changed: it stays failed, with its words
    return True


@dataclass(frozen=True)
class Description:
    phase: str  # queued | waiting | starting | running | cancelling | done | failed | cancelled
    headline: str  # what is happening, in words
    detail: str | None  # why, and what to do
    tone: str  # info | ok | warn | bad


def _about(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(round(seconds), 1)} s"
    return f"about {seconds / 60:.0f} min"


def _queued_words(job: Job, live: Live | None) -> Description:
    """IN_QUEUE: behind other jobs, a worker starting (cold start), or about to be taken."""
    if job.diagnosis == CHECKING:
        return Description("starting", "checking with the GPU endpoint", CHECKING, "info")
    if job.diagnosis:
        return Description("starting", "waiting for a GPU worker", job.diagnosis, "warn")
    eta = live.eta_s if live else None
    estimate = f"Estimated time until done: {_about(eta)}." if eta is not None else None
    if live and live.ahead:
        plural = "job" if live.ahead == 1 else "jobs"
        return Description(
            "waiting", f"waiting behind {live.ahead} {plural} in the GPU queue", estimate, "info"
        )
    if live and live.idle_workers:
        return Description(
            "starting", "queued: an idle GPU worker is about to take it", estimate, "info"
        )
    if live and live.idle_workers is not None and live.running and not live.starting_workers:
        return Description(
            "waiting", "queued: waiting for a busy GPU worker to finish its job", estimate, "info"
        )
    detail = "No GPU worker was idle, so one is starting: the first job after a quiet spell waits."
    if estimate:
        detail += " " + estimate
    return Description("starting", "a GPU worker is starting (cold start)", detail, "info")


def describe(job: Job, live: Live | None = None) -> Description:
    """The job's status in words a person understands; ``live`` (``app.live.live``) adds the
    queue position, cold start and estimate where a page has them."""
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
        return _queued_words(job, live)
    if status == Status.IN_PROGRESS:
        progress = job.progress or {}
        percent = progress.get("percent")
        words = "running on a GPU"
        if isinstance(percent, int | float):
            words += f" ({percent:.0f}%)"
        detail = job.diagnosis
        if not detail and live and live.elapsed_s is not None:
            if isinstance(percent, int | float) and 5 <= percent < 100:
                left = live.elapsed_s * (100 - percent) / percent
                detail = f"Estimated time left: {_about(left)}."
            elif live.eta_s is not None:
                detail = f"Estimated time left: {_about(live.eta_s)} (from recent runs)."
        return Description("running", words, detail, "info")
    if status == Status.COMPLETED:
        return Description("done", "done", None, "ok")
    if status == Status.CANCELLED:
        return Description("cancelled", "cancelled", job.error, "warn")
    if status == Status.TIMED_OUT:
        return Description("failed", "timed out", job.error, "bad")
    return Description("failed", "failed", job.error or "no reason was given", "bad")


@dataclass(frozen=True)
class AttemptRow:
    """One attempt as the job page lists it."""

    number: int
    words: str
    worker_id: str | None
    delay_ms: int | None
    execution_ms: int | None
    cost_usd: float | None
    started_at: Any
    finished_at: Any


ATTEMPT_WORDS = {
    AttemptState.CLAIMED: "being sent to the GPU endpoint",
    AttemptState.UNKNOWN: "sent; waiting for the endpoint to confirm",
    AttemptState.SENT: "sent to the GPU endpoint",
    AttemptState.FAILED: "not sent",
    AttemptState.SUPERSEDED: "replaced by a retry",
    AttemptState.DUPLICATE: "a duplicate run, cancelled",
}


def _reason(error: str) -> str:
    """An attempt's error without the advice the job's banner already gives."""
    reason = error.removeprefix("failed: ").replace(WHAT_TO_DO_FAILED, "").strip()
    reason = reason.rstrip(".")
    return reason if len(reason) <= 160 else reason[:157] + "..."


def attempt_rows(job: Job, now: Description | None = None) -> list[AttemptRow]:
    """Every attempt, oldest first, with its own outcome, worker, timings and cost; ``now``
    (the job's description) words the current one while it runs."""
    rows = []
    current = job.attempts[-1] if job.attempts else None
    for attempt in job.attempts:
        if attempt.outcome:
            words = attempt.outcome.lower().replace("_", " ")
            if attempt.error and attempt.outcome != Status.COMPLETED:
                words += f": {_reason(attempt.error)}"
        elif attempt is current and (
            job.status == Status.IN_PROGRESS
            or (attempt.state == AttemptState.SENT and not job.terminal)
        ):
            words = (now or describe(job)).headline
        else:
            words = ATTEMPT_WORDS.get(AttemptState(attempt.state), attempt.state.lower())
            if attempt.state == AttemptState.FAILED and attempt.error:
                words += f": {attempt.error[:200]}"
        rows.append(
            AttemptRow(
                number=attempt.number,
                words=words,
                worker_id=attempt.worker_id,
                delay_ms=attempt.delay_ms,
                execution_ms=attempt.execution_ms,
                cost_usd=attempt.cost_usd,
                started_at=attempt.started_at,
                finished_at=attempt.finished_at,
            )
        )
    return rows


def duration_s(job: Job) -> float | None:
    """How long the job ran on a GPU: the endpoint's execution time, else start to finish."""
    if job.execution_ms is not None:
        return job.execution_ms / 1000
    if job.started_at and job.finished_at:
        return max((job.finished_at - job.started_at).total_seconds(), 0.0)
    return None


def owner_words(job: Job) -> str:
    """Who created the job, without revealing anything secret (API owners are token hashes)."""
    if not job.owner:
        return "web form"
    return f"API token {job.owner.removeprefix('api:')[:8]}"


def timings(job: Job) -> dict[str, Any]:
    """Queue delay, execution time, cold start and estimated cost, where known."""
    return {
        "queue_delay_s": None if job.delay_ms is None else job.delay_ms / 1000,
        "execution_s": None if job.execution_ms is None else job.execution_ms / 1000,
        "cold_start_s": None if job.cold_start_ms is None else job.cold_start_ms / 1000,
        "cost_usd": job.cost_usd,
    }
