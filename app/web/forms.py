"""Reading an upload request (form or API) into what ``app.lifecycle.jobs.create_job`` needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Request

from app import jsonbody
from app.db import get_session
from app.lifecycle.jobs import JobError, create_job
from app.models import Job
from app.services import services
from app.storable import has_lone_surrogate

PARAM_PREFIX = "param."


@dataclass
class UploadInput:
    staged_path: str | None
    filename: str | None
    declared_type: str | None
    pipeline: str
    params: dict[str, Any]


def read_upload(request: Request, default_pipeline: str) -> UploadInput:
    """File in field ``file``; pipeline in ``pipeline``; parameters as ``param.<name>`` or
    ``param.<pipeline>.<name>`` fields (the form has one set per pipeline; only the chosen
    pipeline's count), or one ``params`` field holding a JSON object."""
    upload = request.files.get("file")
    staged_path = filename = declared = None
    if upload is not None and upload.filename:
        upload.stream.flush()
        staged_path = getattr(upload.stream, "name", None)
        filename = upload.filename
        declared = upload.mimetype
        upload.stream.close()
    params: dict[str, Any] = {}
    raw = request.form.get("params", "").strip()
    if raw:
        try:
            parsed = jsonbody.loads(raw, "params")
        except jsonbody.JSONError as exc:
            raise JobError(f'{exc}; send a JSON object, e.g. {{"sleep_s": 1}}') from None
        if not isinstance(parsed, dict):
            raise JobError('params must be a JSON object, e.g. {"sleep_s": 1}')
        if has_lone_surrogate(parsed):
            # Half a UTF-16 pair ("\ud800") is not text: no database or endpoint can take it.
            raise JobError("params holds a lone surrogate (\\ud800-\\udfff escape): send text")
        params.update(parsed)
    pipeline = request.form.get("pipeline", "").strip() or default_pipeline
    own = f"{PARAM_PREFIX}{pipeline}."
    for key, value in request.form.items():
        if key.startswith(own):
            name = key[len(own) :]
        elif key.startswith(PARAM_PREFIX) and "." not in key[len(PARAM_PREFIX) :]:
            name = key[len(PARAM_PREFIX) :]
        else:
            continue  # another pipeline's field on the form
        if value.strip() != "":  # an empty form field means "use the default"
            params[name] = value.strip()
    return UploadInput(staged_path, filename, declared, pipeline, params)


def create_from_upload(request: Request, owner: str | None = None, reuse: Job | None = None) -> Job:
    """Read the upload and create its committed job; ``JobError`` says what to fix.
    Without a file, ``reuse`` (a job being edited and resubmitted) lends its input."""
    settings = services().settings
    form = read_upload(request, settings.pipelines[0])
    if form.staged_path is None and reuse is not None and reuse.input_key:
        form.staged_path = services().storage.stage_copy(reuse.input_key)
        request.__dict__.setdefault("staged", []).append(form.staged_path)
        form.filename, form.declared_type = reuse.input_name, reuse.input_content_type
    return create_job(
        get_session(),
        services(),
        staged_path=form.staged_path,
        filename=form.filename,
        declared_type=form.declared_type,
        pipeline_name=form.pipeline,
        raw_params=form.params,
        owner=owner,
    )
