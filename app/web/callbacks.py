"""Worker → app callbacks: ``POST /callbacks/<attempt_id>/<kind>?exp=&sig=``.

The GPU worker finds these URLs in its job input (``callbacks``, built by
``app.lifecycle.submission.callback_url``), signed for POST on
``callbacks/<attempt_id>/<kind>`` with the one signed-URL scheme (``app.signing``), so a
worker can only speak for the attempt it was given. Machine-to-machine: exempt from CSRF,
answers in JSON.

- ``claim``: the worker claims the attempt before running the model
  (``app.lifecycle.claims``); 200 to the first claimer and its repeats, 409 to any other
  RunPod job, 410 for a closed attempt.
- ``progress``: ``{"progress": {...}, "worker_id", "job_id", "sent_at"}`` (``sent_at``, the
  worker's clock, is kept as ``progress.reported_at``), applied by
  ``app.lifecycle.status.apply_progress`` so a job page shows what the worker reports within about a
  second without a ``/status`` call. 410 tells the worker to stop sending: the attempt was
  superseded (a retry), the job has ended, or this worker's job is a duplicate.
"""

from __future__ import annotations

import json

from flask import Blueprint, abort, jsonify, request

from app.db import get_session
from app.jsonbody import json_object
from app.lifecycle.claims import claim as claim_attempt
from app.lifecycle.status import Outcome, apply_progress
from app.models import Attempt
from app.services import services
from app.storable import storable_text
from app.web.guards import require_signature

bp = Blueprint("callbacks", __name__, url_prefix="/callbacks")
MAX_BODY = 64 * 1024
MAX_PROGRESS_BYTES = 4096  # a phase, a message and a percent; anything bigger is not progress


def _verify(attempt_id: int, kind: str) -> None:
    require_signature("POST", f"callbacks/{attempt_id}/{kind}")


@bp.post("/<int:attempt_id>/claim")
def claim(attempt_id: int):
    """Body ``{"runpod_id": "<the RunPod job id the worker runs>"}``; 200, 409 or 410."""
    _verify(attempt_id, "claim")
    body = json_object(request, MAX_BODY)
    runpod_id = body.get("runpod_id")
    if (
        not isinstance(runpod_id, str)
        or not runpod_id.strip()
        or len(runpod_id) > 128
        or storable_text(runpod_id) != runpod_id  # a NUL or half a surrogate pair: not an id
    ):
        abort(400, description="runpod_id: expected the RunPod job id (a string of 1-128 chars)")
    verdict, message = claim_attempt(
        get_session(),
        attempt_id,
        runpod_id.strip(),
        services(),
        poll=True,
    )
    response = jsonify(claim=verdict.name.lower(), message=message)
    response.status_code = verdict.value
    return response


@bp.post("/<int:attempt_id>/progress")
def progress(attempt_id: int):
    _verify(attempt_id, "progress")
    attempt = get_session().get(Attempt, attempt_id)
    if attempt is None:
        abort(410, description="no such attempt: stop sending")
    body = json_object(request, MAX_BODY)
    update = body.get("progress")
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
        services=services(),
    )
    if outcome in (Outcome.STALE, Outcome.DUPLICATE):
        abort(410, description="this attempt is over (retried, finished or a duplicate): stop")
    return jsonify(ok=True, outcome=outcome.value)
