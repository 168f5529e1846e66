"""The pages people use: upload, a job's live page, their jobs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select

from app import pipelines
from app.clients import webhooks as client_webhooks
from app.db import get_session
from app.endpoints import billing
from app.endpoints.health import FRESH_SNAPSHOT_S, ask_refresh, load_snapshot
from app.lifecycle.jobs import JobError, cancel_job, retry_job
from app.models import Job, Status, WebhookMessage
from app.services import services
from app.web import job_or_404
from app.web.auth import is_admin, may_act_on, my_job_ids, remember_job
from app.web.console import exception_line, log_text, parse_line
from app.web.forms import create_from_upload
from app.web.live import live, unavailable_pipelines
from app.web.present import job_json, program_access, result_url
from app.web.words import (
    attempt_rows,
    describe,
    describe_now,
    download_name,
    duration_s,
    operator_fix,
    owner_words,
    result_summary,
    technical_error,
    timings,
    worker_said,
)

bp = Blueprint("pages", __name__)


def _catalogue() -> list[pipelines.Pipeline]:
    settings = services().settings
    return [pipelines.get(name, settings.pipelines, settings) for name in settings.pipelines]


def _reusable(job_id: str | None) -> Job | None:
    """The job being edited and resubmitted, if this browser may and its input still exists."""
    if not job_id or len(job_id) > 36 or not may_act_on(job_id):
        return None
    job = get_session().get(Job, job_id)
    if job is None or job.files_deleted_at or not job.input_key:
        return None
    return job if services().storage.exists(job.input_key) else None


def form_page(
    status: int = 200,
    *,
    values: dict,
    reuse: Job | None = None,
    error: str | None = None,
    errors: list[str] | None = None,
):
    """The upload form with ``values`` filled in and ``error`` (or each of ``errors``) shown
    above it; pipelines a worker could not load are marked unavailable."""
    settings = services().settings
    catalogue = _catalogue()
    any_types = ",".join(settings.allowed_upload_types)  # what a pipeline taking "any" takes
    page = render_template(
        "upload.html",
        pipelines=catalogue,
        settings=settings,
        values=values,
        reuse=reuse,
        error=error,
        errors=errors or ([error] if error else []),
        unavailable=unavailable_pipelines(get_session(), [p.name for p in catalogue]),
        accepts={p.name: p.accept or any_types for p in catalogue},
        any_types=any_types,
        fix=operator_fix,
        worker_said=worker_said,
        admin=is_admin(),
        type_words=" or ".join(kind.removesuffix("/*") for kind in settings.allowed_upload_types),
    )
    return page, status


@bp.get("/")
def upload_form():
    reuse = _reusable(request.args.get("from"))
    values: dict = {}
    if reuse is not None:
        # Edit and resubmit: the failed job's pipeline and parameters, ready to change.
        values["pipeline"] = reuse.pipeline
        for name, value in (reuse.params or {}).items():
            values[f"param.{reuse.pipeline}.{name}"] = str(value)
    return form_page(values=values, reuse=reuse)


@bp.get("/favicon.ico")
def favicon():
    """Browsers and tools that ask for /favicon.ico without reading the page's link get the
    same icon rather than a 404 in every log."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)


@bp.post("/jobs")
def upload():
    reuse = _reusable(request.form.get("from_job"))
    try:
        job = create_from_upload(request, reuse=reuse)
    except JobError as exc:
        # The form comes back with the pipeline and values as they were sent.
        values = {k: v for k, v in request.form.items() if k != "csrf_token"}
        return form_page(
            exc.status_code, values=values, reuse=reuse, error=str(exc), errors=exc.problems
        )
    services().enqueue("tasks.submit", job.id)
    remember_job(job.id)
    return redirect(url_for("pages.job_page", job_id=job.id), code=303)


def _job_context(job: Job) -> dict:
    if job.status == Status.IN_QUEUE:
        # "A worker is starting" or "about to be taken" rests on the endpoint snapshot: keep
        # it a few seconds fresh while someone waits (rate-limited; /health, not /status).
        ask_refresh(get_session(), services().enqueue, FRESH_SNAPSHOT_S, [job.endpoint])
    now = live(get_session(), job)
    words = describe(job, now)
    admin = is_admin()
    return {
        "operator": _operator_details(job) if admin else None,
        "job": job,
        "live": now,
        "words": words,
        "timings": timings(job),
        "attempts": attempt_rows(job, words),
        "price": billing.price(services().settings, job.endpoint),
        "bill": billing.parts(get_session(), job),
        "result_url": result_url(job, external=False),
        "summary": result_summary(job) if job.status == Status.COMPLETED else [],
        "download_name": download_name(job),
        "can_act": may_act_on(job.id),
        "admin": admin,
    }


def _operator_details(job: Job) -> dict | None:
    """For a failed job: what the worker reported beyond the one-line error (a traceback,
    the raw error), and its worker's last log lines from the endpoint snapshot."""
    if job.status not in ("FAILED", "TIMED_OUT", "CANCELLED"):
        return None
    detail = (job.error_detail or "").strip()
    if detail and job.error and detail in job.error:
        detail = ""  # already the one-line error: saying it twice helps no one
    logs = (load_snapshot(get_session(), job.endpoint) or {}).get("job_logs") or {}
    log = logs.get(job.id)
    lines = [parse_line(str(line)) for line in (log or {}).get("lines") or []]
    return {
        "detail": detail,
        "log": log,
        "log_lines": lines,
        # The line that names the failure, wherever it is: the traceback the worker reported,
        # the one-line error, or the worker's log (an SDK JSON line may hold a traceback).
        "exception": exception_line(job.error_detail, job.error, log_text(lines)),
        "fix": operator_fix(job),
        "error": technical_error(job),
    }


@bp.get("/jobs/<job_id>")
def job_page(job_id: str):
    context = _job_context(job_or_404(job_id))
    if context["can_act"]:  # issue 20: how a program gets it, and its client webhooks
        context["program"] = program_access(context["job"])
        context["deliveries"] = client_webhooks.messages(get_session(), job_id)
    operator = context["operator"]
    if operator and not operator["log"] and context["job"].worker_id:
        # Fetches the worker's log tail.
        ask_refresh(get_session(), services().enqueue, FRESH_SNAPSHOT_S, [context["job"].endpoint])
    return render_template("job.html", **context)


@bp.get("/jobs/<job_id>/panel")
def job_panel(job_id: str):
    """The live part of the job page; the page's script re-fetches it until the job ends."""
    job = job_or_404(job_id)
    response = render_template("_job_panel.html", **_job_context(job))
    return response, 200, {"X-Job-Terminal": "1" if job.terminal else "0"}


@bp.get("/jobs/<job_id>.json")
def job_data(job_id: str):
    """The job as the API shows it, for the page's link holders (the job id is the secret)."""
    job = job_or_404(job_id)
    return jsonify(job_json(job, live(get_session(), job)))


@bp.get("/jobs")
def job_list():
    session = get_session()
    settings = services().settings
    status = request.args.get("status", "").strip().upper()
    pipeline = request.args.get("pipeline", "").strip()
    endpoint = request.args.get("endpoint", "").strip()
    fleet = services().fleet
    if endpoint and endpoint not in fleet:
        abort(400, description=fleet.unknown_words(endpoint))
    if status and status not in Status.__members__:
        abort(400, description=f"status {status!r}: use one of {', '.join(Status)}")
    if pipeline and pipeline not in settings.pipelines:
        abort(400, description=f"pipeline {pipeline!r}: use one of {', '.join(settings.pipelines)}")
    query = select(Job).order_by(Job.created_at.desc()).limit(200)
    if not is_admin():
        query = query.where(Job.id.in_(my_job_ids() or ["-"]))
    if status:
        query = query.where(Job.status == status)
    if pipeline:
        query = query.where(Job.pipeline == pipeline)
    if endpoint:
        query = query.where(Job.endpoint == endpoint)
    jobs = session.scalars(query).all()
    return render_template(
        "jobs.html",
        jobs=jobs,
        describe=functools.partial(describe_now, session),
        duration=duration_s,
        owner=owner_words,
        admin=is_admin(),
        statuses=list(Status),
        pipelines=settings.pipelines,
        status=status,
        pipeline=pipeline,
        endpoints=fleet.names if fleet.several else [],
        endpoint=endpoint,
    )


def _act_on_job(job_id: str, verb: str, action: Callable[..., Any], done: str):
    """Cancel or retry from the job page: only its uploader or an admin; the outcome, or why
    the job's state refuses it, is flashed on the page."""
    job = job_or_404(job_id)
    if not may_act_on(job.id):
        abort(403, description=f"only the person who uploaded this job, or an admin, may {verb} it")
    try:
        action(get_session(), job, services())
        flash(done)
    except JobError as exc:
        flash(str(exc))
    return redirect(url_for("pages.job_page", job_id=job.id), code=303)


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str):
    return _act_on_job(job_id, "cancel", cancel_job, "Cancelling the job.")


@bp.post("/jobs/<job_id>/webhooks/<message_id>/redeliver")
def redeliver_webhook(job_id: str, message_id: str):
    """Issue 20: send a client webhook delivery again (same webhook-id), from the job page."""
    job = job_or_404(job_id)
    if not may_act_on(job.id):
        abort(403, description="only the job's owner, or an admin, may redeliver its webhooks")
    message = get_session().get(WebhookMessage, message_id)
    if message is None or message.job_id != job.id:
        abort(404, description="no such webhook delivery for this job")
    client_webhooks.redeliver(get_session(), message, services())
    flash(f"Sending the {message.event} webhook again.")
    return redirect(url_for("pages.job_page", job_id=job.id), code=303)


@bp.post("/jobs/<job_id>/retry")
def retry(job_id: str):
    return _act_on_job(job_id, "retry", retry_job, "Retrying the job.")
