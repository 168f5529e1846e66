"""The jobs service: create, cancel and retry jobs (the words pages show are app.web.words).

Pages, the JSON API and the CLI all come through here, so each rule lives once: the row is
committed before its submit task is enqueued (a lost message is found by reconcile), and a
job leaves a terminal state only by ``retry``, which starts a new attempt.
"""

from __future__ import annotations

import fnmatch
import mimetypes
import os
import uuid
from typing import Any

from sqlalchemy.orm import Session

from app import media, pipelines
from app.lifecycle.claims import close_unclaimed
from app.lifecycle.retry import refusal, restart
from app.lifecycle.status import apply_status
from app.models import AttemptState, Job, Status, utcnow
from app.services import Services
from app.settings import Settings
from app.storable import display_name
from app.storage import safe_name


def find_job(session: Session, job_id: str) -> Job | None:
    """The job ``job_id`` names, or None (ids are UUIDs: longer ones are not even looked up)."""
    return session.get(Job, job_id) if len(job_id) <= 36 else None


class JobError(Exception):
    """A request the service refuses; ``status_code`` is the HTTP answer."""

    def __init__(
        self, message: str, status_code: int = 400, problems: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.problems = problems or [message]  # each problem, for a form to list them all


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
    problems = []
    if not staged_path or not filename:
        problems.append("no file: choose a video or image to upload (form field 'file')")
    try:
        pipeline = pipelines.get(pipeline_name, settings.pipelines, settings)
        params = pipeline.parse_params(raw_params)
    except pipelines.ParamError as exc:
        problems.extend(exc.problems)
    content_type = content_type_of(filename, declared_type) if filename else ""
    status = 400
    if filename:
        try:
            check_type(content_type, settings)
        except JobError as exc:
            problems.append(str(exc))
            status = exc.status_code if len(problems) == 1 else status  # alone: its own 415
    if problems:  # every problem at once: a form shows them all
        raise JobError("; ".join(problems), status, problems=problems)
    assert staged_path and filename  # for the type checker: a missing file is a problem
    if os.path.getsize(staged_path) == 0:
        raise JobError("the file is empty")
    kind = "any"
    if not pipeline.takes("any"):
        try:
            info = media.probe(staged_path)
        except media.TooLarge as exc:
            raise JobError(str(exc), 413) from None
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
        endpoint=services.fleet.for_pipeline(pipeline.name).name,
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
    refused by the claim (``app.lifecycle.claims``). False when a worker claimed it first."""
    attempt = job.current_attempt
    if job.status != Status.SUBMITTING or attempt is None or attempt.state != AttemptState.UNKNOWN:
        return False
    if close_unclaimed(session, attempt, AttemptState.SUPERSEDED, "cancelled by you"):
        session.commit()
        return True
    session.rollback()
    return False


def retry_job(session: Session, job: Job, services: Services) -> None:
    """Start a new attempt for a failed, cancelled or timed-out job."""
    reason = refusal(job, services)
    if reason:
        raise JobError(reason, 409)
    if not restart(session, job, services):
        raise JobError("the job changed meanwhile; reload the page", 409)
