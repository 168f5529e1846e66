"""Callbacks from GPU workers: one signed URL per attempt and kind (``callback_url``).

``POST /callbacks/<attempt_id>/progress`` takes ``{"progress": {...}, "worker_id", "job_id",
"sent_at"}`` (``sent_at``, the worker's clock, is kept as ``progress.reported_at``)
and applies it with ``app.status.apply_progress``, so a job page shows what the worker
reports within about a second without a ``/status`` call. 410 tells the worker to stop:
the attempt was superseded (a retry) or the job has ended.
"""

from __future__ import annotations

import json

from flask import Blueprint, abort, jsonify, request

from app.db import get_session
from app.extensions import get_settings
from app.models import Attempt
from app.signing import SignatureError, verify
from app.status import Outcome, apply_progress

bp = Blueprint("callbacks", __name__, url_prefix="/callbacks")

MAX_PROGRESS_BYTES = 4096  # a phase, a message and a percent; anything bigger is not progress


def _attempt(attempt_id: int, kind: str) -> Attempt:
    try:
        verify(
            get_settings().secret_key,
            "POST",
            f"callbacks/{attempt_id}/{kind}",
            request.args.get("exp"),
            request.args.get("sig"),
        )
    except SignatureError as exc:
        abort(403, description=f"bad callback URL: {exc}")
    attempt = get_session().get(Attempt, attempt_id)
    if attempt is None:
        abort(410, description="no such attempt: stop sending")
    return attempt


@bp.post("/<int:attempt_id>/progress")
def progress(attempt_id: int):
    attempt = _attempt(attempt_id, "progress")
    body = request.get_json(silent=True)
    update = body.get("progress") if isinstance(body, dict) else None
    if not isinstance(update, dict) or len(json.dumps(update)) > MAX_PROGRESS_BYTES:
        abort(400, description='send {"progress": {"phase", "message", "percent"}} as JSON')
    worker_id, runpod_id = body.get("worker_id"), body.get("job_id")
    sent_at = body.get("sent_at")
    if isinstance(sent_at, int | float) and not isinstance(sent_at, bool):
        update = {**update, "reported_at": round(float(sent_at), 3)}
    outcome = apply_progress(
        get_session(),
        attempt.job,
        attempt,
        update,
        worker_id=worker_id if isinstance(worker_id, str) else None,
        runpod_id=runpod_id if isinstance(runpod_id, str) else None,
    )
    if outcome in (Outcome.STALE, Outcome.DUPLICATE):
        abort(410, description="this attempt is over (retried, finished or a duplicate): stop")
    return jsonify(ok=True, outcome=outcome.value)
