"""Webhook receiver: the endpoint POSTs a job's final status here.

RunPod does not sign webhooks, so the URL carries an unguessable per-job token
(``/webhooks/<job id>/<token>``). The payload goes through ``apply_status`` like a poll's,
so a repeated delivery changes nothing. A payload for a RunPod job that is not the job's
current one is a duplicate execution: it is cancelled at the endpoint and ignored.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, abort, jsonify, request

from app.db import get_session
from app.jsonbody import json_object
from app.lifecycle.jobs import find_job
from app.lifecycle.status import Outcome, PayloadError, apply_status
from app.services import services

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
# RunPod caps a job's output at 20 MB; inline results are base64 (a third larger).
MAX_BODY = 32 * 1024 * 1024


@bp.post("/<job_id>/<token>")
def receive(job_id: str, token: str):
    session = get_session()
    job = find_job(session, job_id)
    if job is None or not hmac.compare_digest(job.webhook_token.encode(), token.encode()):
        abort(403, description="unknown job or wrong webhook token")
    payload = json_object(request, MAX_BODY, "the webhook body")
    try:
        outcome = apply_status(session, job, payload, "webhook", services(), retry_own_failure=True)
    except PayloadError as exc:
        abort(400, description=str(exc))
    if outcome == Outcome.DUPLICATE and payload.get("id"):
        # The duplicate ran on the job's endpoint: cancel it there.
        endpoint = services().endpoint_of(job)
        services().enqueue("tasks.cancel_remote", str(payload["id"]), endpoint)
    return jsonify(ok=True, outcome=outcome.value, status=job.status)
