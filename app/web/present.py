"""A job as the pages and the JSON API show it (one shape for both)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from app.db import get_session
from app.endpoints import billing
from app.models import RETRYABLE, Job, Status
from app.services import services
from app.web.live import Live
from app.web.words import describe, timings


def result_url(job: Job, *, external: bool) -> str | None:
    if job.status != Status.COMPLETED or not job.output_key or job.files_deleted_at:
        return None
    ttl = 3600
    return services().storage.get_url(job.output_key, ttl, external=external)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with its UTC offset, always (SQLite hands datetimes back without one)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def when(moment: datetime | None, form: str = "full") -> Markup:
    """A ``<time>`` element in UTC, which the page's script shows in the reader's time zone
    (static/time.js) with UTC kept on hover; ``form="clock"`` shows the time of day only."""
    if moment is None:
        return Markup("–")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    full = moment.strftime("%Y-%m-%d %H:%M:%S")
    shown = moment.strftime("%H:%M:%S") if form == "clock" else full
    return Markup('<time datetime="{}" title="{} UTC" data-form="{}">{} UTC</time>').format(
        moment.isoformat().replace("+00:00", "Z"), full, form, shown
    )


def job_urls(job: Job) -> dict[str, str | None]:
    """Where a script goes next, like Replicate's ``urls``: the API's own view of the job,
    the page a person can open, the result (an expiring link, once done), cancel and retry."""
    base = services().settings.public_base_url.rstrip("/")
    return {
        "get": f"{base}/api/jobs/{job.id}",
        "page": f"{base}/jobs/{job.id}",
        "result": result_url(job, external=True),
        "cancel": None if job.terminal else f"{base}/api/jobs/{job.id}/cancel",
        "retry": f"{base}/api/jobs/{job.id}/retry" if job.status in RETRYABLE else None,
    }


def program_access(job: Job) -> dict[str, Any]:
    """Where a program reads this job (issue 20): the API for a token's job (it needs the
    token and may wait), the page's JSON for a form upload (its id is its secret)."""
    base = services().settings.public_base_url.rstrip("/")
    if job.owner:
        return {"url": f"{base}/api/jobs/{job.id}", "token": True, "token_name": job.token_name}
    return {"url": f"{base}/jobs/{job.id}.json", "token": False, "token_name": None}


def bill_json(job: Job) -> dict[str, Any] | None:
    """Issue 19: the job's bill as billed (``so_far`` while it may still grow) and its parts
    in seconds; None until the endpoint's record of its worker has been read."""
    parts = billing.parts(get_session(), job)
    if parts is None:
        return None
    return {
        "cost_usd": parts.usd,
        "so_far": parts.so_far,
        "seconds": {
            "start": parts.start_s,
            "model_load": parts.model_load_s,
            "run": parts.run_s,
            "upload": parts.upload_s,
        },
    }


def job_json(job: Job, live: Live | None = None) -> dict[str, Any]:
    words = describe(job, live)
    return {
        "id": job.id,
        "status": job.status,
        "phase": words.phase,
        "message": words.headline,
        "detail": words.detail,
        "pipeline": job.pipeline,
        "endpoint": job.endpoint,
        "params": job.params,
        "token_name": job.token_name,  # the named API token that made it (issue 20)
        "input": {"name": job.input_name, "size": job.input_size, "type": job.input_content_type},
        "progress": job.progress,
        "result": job.result,
        "result_url": result_url(job, external=True),
        "result_type": job.output_content_type if job.output_size else None,
        "error": job.error,
        "diagnosis": job.diagnosis,
        "timings": timings(job),
        "cost": bill_json(job),
        # While it runs: seconds so far (the execution time above is only ever the final one).
        "running_s": None if live is None else live.elapsed_s,
        "gpu_price_per_second": billing.price(services().settings, job.endpoint),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "urls": job_urls(job),
        "queue": None
        if live is None
        else {
            "ahead": live.ahead,
            "position": live.position,
            "queued": live.queued,
            "starts_in_s": live.start_in_s,
            "starts_s": live.starts_s,
            "done_in_s": live.done_in_s,
            "eta_s": live.eta_s,
        },
        "terminal": job.terminal,
    }
