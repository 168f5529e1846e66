"""Signed file routes for local storage: GPU workers GET inputs (with HTTP Range) and PUT
results; browsers GET results. Every request needs a valid, unexpired signature for its
method and key; a key that could leave the storage root is answered 404 before anything
else (DESIGN invariants 6 and 8)."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request, send_file

from app import inert
from app.db import get_session
from app.lifecycle.jobs import find_job
from app.services import services
from app.storage import InvalidKey, LocalStorage, TooLarge, check_key
from app.units import human_bytes
from app.web.guards import require_signature
from app.web.words import download_name

bp = Blueprint("files", __name__, url_prefix="/files")


def _local() -> LocalStorage:
    storage = services().storage
    if not isinstance(storage, LocalStorage):
        abort(404, description="files are served by S3 in this deployment")
    return storage


def _authorise(method: str, key: str) -> None:
    try:
        check_key(key)
    except InvalidKey:
        abort(404, description="no such file")
    if key.split("/", 1)[0] != "jobs":
        abort(404, description="no such file")
    require_signature(method, key)


@bp.get("/<path:key>")
def get(key: str):
    storage = _local()
    _authorise("GET", key)
    path = storage.path(key)
    if not path.is_file():
        abort(404, description="no such file")
    headers = inert.file_headers(key, _download_name(key))
    # conditional=True answers Range requests with 206 and a Content-Range.
    response = send_file(
        path, mimetype=headers["Content-Type"], conditional=True, etag=True, max_age=0
    )
    response.headers.update(headers)  # inert: nosniff, sandbox, attachment unless media
    return response


def _download_name(key: str) -> str | None:
    """A result is saved as ``<input name>-<pipeline>.<ext>``, not ``result.mp4``; the name
    comes from the job row, never from the request."""
    parts = key.split("/")
    if len(parts) != 4 or parts[2] != "output":
        return None
    job = find_job(get_session(), parts[1])
    return download_name(job) if job is not None and job.output_key == key else None


@bp.put("/<path:key>")
def put(key: str):
    storage = _local()
    _authorise("PUT", key)
    if "/output/" not in key:
        abort(403, description="forbidden: only results may be uploaded")
    _check_job_open(key)
    limit = services().settings.max_upload_bytes
    too_large = (
        f"the result is too large: the app accepts results up to {human_bytes(limit)} "
        "(MAX_UPLOAD_BYTES)"
    )
    if request.content_length is not None and request.content_length > limit:
        abort(413, description=too_large)
    try:
        size = storage.save_stream(key, request.stream, max_bytes=limit)
    except TooLarge:
        abort(413, description=too_large)
    return jsonify(ok=True, size=size), 201


def _check_job_open(key: str) -> None:
    """A result may be written only while its job runs: once the job has ended its result
    is what people were shown, and a late or replayed PUT must not replace it."""
    job_id = key.split("/")[1]
    job = find_job(get_session(), job_id)
    if job is None:
        abort(410, description="gone: no such job")
    if job.terminal:
        abort(409, description=f"the job already ended ({job.status.lower()}): result refused")
