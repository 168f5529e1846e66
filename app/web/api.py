"""The JSON API, mirroring the pages, for scripts: ``Authorization: Bearer <token>``.

A token sees only the jobs created with it. ``GET /api/openapi.json`` describes it all.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.db import get_session
from app.lifecycle.jobs import JobError, cancel_job, retry_job
from app.models import Job, Status
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


@bp.post("/jobs")
@token_required
def create(owner: str):
    if not request.mimetype or request.mimetype != "multipart/form-data":
        return _error("send multipart/form-data with a 'file' field", 415)
    try:
        job = create_from_upload(request, owner)
    except JobError as exc:
        return _error(str(exc), exc.status_code)
    services().enqueue("tasks.submit", job.id)
    response = jsonify(job_json(job))
    response.status_code = 201
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return response


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
    return jsonify(job_json(job_or_404(job_id, owner=owner)))


@bp.post("/jobs/<job_id>/cancel")
@token_required
def cancel(job_id: str, owner: str):
    job = job_or_404(job_id, owner=owner)
    session = get_session()
    try:
        cancel_job(session, job, services())
    except JobError as exc:
        return _error(str(exc), exc.status_code)
    return jsonify(job_json(session.get(Job, job_id))), 202


@bp.post("/jobs/<job_id>/retry")
@token_required
def retry(job_id: str, owner: str):
    job = job_or_404(job_id, owner=owner)
    session = get_session()
    try:
        retry_job(session, job, services())
    except JobError as exc:
        return _error(str(exc), exc.status_code)
    return jsonify(job_json(session.get(Job, job_id))), 202
