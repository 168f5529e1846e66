"""The JSON API, mirroring the pages, for scripts: ``Authorization: Bearer <token>``.

A token sees only the jobs created with it. ``GET /api/openapi.json`` describes it all.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, g, jsonify, request
from sqlalchemy import select

from app.clients import idempotency, quotas, waiting, webhooks
from app.db import get_session
from app.lifecycle.jobs import JobError, cancel_job, retry_job
from app.models import Job, Status, WebhookMessage
from app.openapi import document
from app.services import services
from app.web import job_or_404
from app.web.auth import token_required
from app.web.forms import create_from_upload
from app.web.present import job_json

bp = Blueprint("api", __name__, url_prefix="/api")


def _error(message: str, code: int):
    response = jsonify(error=message)
    response.status_code = code
    return response


@bp.get("/openapi.json")
def openapi():
    return jsonify(document(services().settings))


def _prefer_wait() -> int | None:
    return waiting.parse_prefer(request.headers.get("Prefer"))


def _waited(job: Job, seconds: int | None) -> Job:
    if seconds is None or job.terminal:
        return job
    return waiting.wait_for_end(get_session(), job, seconds, services().redis)


def _applied(response, seconds: int | None):
    if seconds is not None:
        response.headers["Preference-Applied"] = f"wait={seconds}"
    return response


def _client_webhook() -> tuple[str | None, str | None]:
    """The ``webhook`` and ``webhook_events_filter`` fields, checked (issue 20)."""
    url = request.form.get("webhook", "").strip()
    raw_events = ",".join(request.form.getlist("webhook_events_filter"))
    if not url:
        if raw_events:
            raise webhooks.WebhookURLError("webhook_events_filter needs a webhook URL")
        return None, None
    if g.api_caller.token is None:
        raise webhooks.WebhookURLError(
            "webhooks are signed with a named token's secret: make one with "
            "`flask admin tokens create NAME` and send it instead of an API_TOKENS token"
        )
    events = webhooks.parse_events(raw_events)
    return webhooks.check_url(url, services().settings).url, events


@bp.post("/jobs")
@token_required
def create(owner: str):
    if not request.mimetype or request.mimetype != "multipart/form-data":
        return _error("send multipart/form-data with a 'file' field", 415)
    try:
        wait = _prefer_wait()
        webhook, events = _client_webhook()
    except (waiting.PreferError, webhooks.WebhookURLError) as exc:
        return _error(str(exc), 400)
    session = get_session()
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return _new_job(owner, webhook, events, wait)
    try:
        key = idempotency.valid_key(key)
        replay = idempotency.begin(session, owner, key, idempotency.request_hash(request))
    except idempotency.IdempotencyError as exc:
        return _error(str(exc), exc.status_code)
    if replay is not None:
        response = jsonify(replay.body)
        response.status_code = replay.status_code
        response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = f"/api/jobs/{replay.body.get('id')}"
        return response
    try:
        response = _new_job(owner, webhook, events, wait, key)
    except BaseException:
        idempotency.give_back(session, owner, key)  # nothing made: the client may resend
        raise
    if response.status_code != 201:
        idempotency.give_back(session, owner, key)
    return response


def _new_job(
    owner: str,
    webhook: str | None,
    events: str | None,
    wait: int | None,
    key: str | None = None,
):
    """Check the token's quotas, make the job, queue it; with ``key``, store the answer for
    replays before any wait."""
    session = get_session()
    token = g.api_caller.token
    over = quotas.check(session, token) if token is not None else None
    if over is not None:
        response = jsonify(
            error=over.message,
            limit=over.limit,
            resets_at=over.resets_at.isoformat() if over.resets_at else None,
        )
        response.status_code = 429
        response.headers["Retry-After"] = str(over.retry_after_s)
        return response
    try:
        job = create_from_upload(request, owner)
    except JobError as exc:
        return _error(str(exc), exc.status_code)
    if token is not None or webhook:
        job.token_name = g.api_caller.name
        job.client_webhook_url, job.client_webhook_events = webhook, events
        session.commit()
    services().enqueue("tasks.submit", job.id)
    body = job_json(job)
    if key is not None:
        idempotency.finish(session, owner, key, 201, body)
    if wait is not None:
        body = job_json(_waited(job, wait))
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return _applied(response, wait)


@bp.get("/jobs")
@token_required
def list_jobs(owner: str):
    limit = request.args.get("limit", "50")
    # ASCII digits only: str.isdigit() also passes "²", which int() refuses (a 500).
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= 500:
        return _error("limit must be a whole number from 1 to 500", 400)
    query = select(Job).where(Job.owner == owner).order_by(Job.created_at.desc())
    status = request.args.get("status", "").strip().upper()
    if status:
        if status not in Status.__members__:
            return _error(f"status {status!r}: use one of {', '.join(Status)}", 400)
        query = query.where(Job.status == status)
    pipeline = request.args.get("pipeline", "").strip()
    if pipeline:
        if pipeline not in services().settings.pipelines:
            names = ", ".join(services().settings.pipelines)
            return _error(f"pipeline {pipeline!r}: use one of {names}", 400)
        query = query.where(Job.pipeline == pipeline)
    unknown = sorted(set(request.args) - {"status", "pipeline", "limit"})
    if unknown:
        return _error(f"unknown filter {unknown[0]!r}: use status, pipeline or limit", 400)
    jobs = get_session().scalars(query.limit(int(limit))).all()
    return jsonify(jobs=[job_json(job) for job in jobs])


@bp.get("/jobs/<job_id>")
@token_required
def get(job_id: str, owner: str):
    try:
        wait = _prefer_wait()
    except waiting.PreferError as exc:
        return _error(str(exc), 400)
    job = _waited(job_or_404(job_id, owner=owner), wait)
    return _applied(jsonify(job_json(job)), wait)


@bp.get("/jobs/<job_id>/webhooks")
@token_required
def list_webhooks(job_id: str, owner: str):
    job = job_or_404(job_id, owner=owner)
    found = webhooks.messages(get_session(), job.id)
    return jsonify(deliveries=[webhooks.message_json(m) for m in found])


@bp.post("/jobs/<job_id>/webhooks/<message_id>/redeliver")
@token_required
def redeliver(job_id: str, message_id: str, owner: str):
    job = job_or_404(job_id, owner=owner)
    session = get_session()
    message = session.get(WebhookMessage, message_id)
    if message is None or message.job_id != job.id:
        return _error("no such delivery for this job: see GET .../webhooks", 404)
    webhooks.redeliver(session, message, services())
    return jsonify(webhooks.message_json(message)), 202


def _act_on_job(job_id: str, owner: str, action: Callable[..., object]):
    """Cancel or retry: 202 with the job as it is now, or the JobError's status and words."""
    job = job_or_404(job_id, owner=owner)
    session = get_session()
    try:
        action(session, job, services())
    except JobError as exc:
        return _error(str(exc), exc.status_code)
    return jsonify(job_json(session.get(Job, job_id))), 202


@bp.post("/jobs/<job_id>/cancel")
@token_required
def cancel(job_id: str, owner: str):
    return _act_on_job(job_id, owner, cancel_job)


@bp.post("/jobs/<job_id>/retry")
@token_required
def retry(job_id: str, owner: str):
    return _act_on_job(job_id, owner, retry_job)
