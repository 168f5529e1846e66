"""A job as the pages and the JSON API show it (one shape for both)."""

from __future__ import annotations

from typing import Any

from app.extensions import get_settings, get_storage
from app.jobs import describe, timings
from app.live import Live
from app.models import Job, Status


def result_url(job: Job, *, external: bool) -> str | None:
    if job.status != Status.COMPLETED or not job.output_key or job.files_deleted_at:
        return None
    ttl = 3600
    return get_storage().get_url(job.output_key, ttl, external=external)


def input_url(job: Job, *, external: bool) -> str | None:
    if not job.input_key or job.files_deleted_at:
        return None
    return get_storage().get_url(job.input_key, 3600, external=external)


def job_json(job: Job, live: Live | None = None) -> dict[str, Any]:
    words = describe(job, live)
    return {
        "id": job.id,
        "status": job.status,
        "phase": words.phase,
        "message": words.headline,
        "detail": words.detail,
        "pipeline": job.pipeline,
        "params": job.params,
        "input": {"name": job.input_name, "size": job.input_size, "type": job.input_content_type},
        "progress": job.progress,
        "result": job.result,
        "result_url": result_url(job, external=True),
        "result_type": job.output_content_type if job.output_size else None,
        "error": job.error,
        "diagnosis": job.diagnosis,
        "timings": timings(job),
        "gpu_price_per_second": get_settings().gpu_price_per_second,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "queue": None if live is None else {"ahead": live.ahead, "eta_s": live.eta_s},
        "terminal": job.terminal,
    }
