"""Worker → app callbacks: ``POST /callbacks/<attempt_id>/<kind>?exp=&sig=``.

The GPU worker finds these URLs in its job input (``callbacks``), signed for POST on
``callbacks/<attempt_id>/<kind>`` with the one signed-URL scheme (``app.signing``), so a
worker can only speak for the attempt it was given. Machine-to-machine: exempt from CSRF,
answers in JSON.
"""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request

from app import signing
from app.claims import claim as claim_attempt
from app.db import get_session
from app.extensions import enqueue, get_settings, get_storage
from app.jsonbody import json_object

bp = Blueprint("callbacks", __name__, url_prefix="/callbacks")
MAX_BODY = 64 * 1024


def _verify(attempt_id: int, kind: str) -> None:
    try:
        signing.verify(
            get_settings().secret_key,
            "POST",
            f"callbacks/{attempt_id}/{kind}",
            request.args.get("exp"),
            request.args.get("sig"),
        )
    except signing.SignatureError as exc:
        abort(403, description=f"forbidden: {exc}")


@bp.post("/<int:attempt_id>/claim")
def claim(attempt_id: int):
    """Body ``{"runpod_id": "<the RunPod job id the worker runs>"}``; 200, 409 or 410."""
    _verify(attempt_id, "claim")
    body = json_object(request, MAX_BODY)
    runpod_id = body.get("runpod_id")
    if not isinstance(runpod_id, str) or not runpod_id.strip() or len(runpod_id) > 128:
        abort(400, description="runpod_id: expected the RunPod job id (a string of 1-128 chars)")
    verdict, message = claim_attempt(
        get_session(),
        attempt_id,
        runpod_id.strip(),
        settings=get_settings(),
        storage=get_storage(),
        enqueue=enqueue,
    )
    response = jsonify(claim=verdict.name.lower(), message=message)
    response.status_code = verdict.value
    return response
