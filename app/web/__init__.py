"""Blueprints: pages (upload, jobs), admin, JSON API, signed file routes, webhooks."""

from __future__ import annotations

from flask import abort

from app.db import get_session
from app.lifecycle.jobs import find_job
from app.models import Job


def job_or_404(job_id: str, *, owner: str | None = None) -> Job:
    """The job ``job_id`` names, or a 404; with ``owner`` (an API token's), only that
    owner's jobs are found."""
    job = find_job(get_session(), job_id)
    if owner is not None and (job is None or job.owner != owner):
        abort(404, description=f"no job {job_id} for this token")
    if job is None:
        abort(404, description="no such job")
    return job
