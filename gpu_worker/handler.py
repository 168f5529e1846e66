"""The runpod handler: validates the job input and runs the named pipeline."""

from __future__ import annotations

import logging
from typing import Any

from gpu_worker import pipelines

log = logging.getLogger("gpu_worker")


class InputError(ValueError):
    """A problem with the job's input, described so a person can fix it."""


def _progress_reporter(job: dict[str, Any]):
    def report(update: dict[str, Any]) -> None:
        if not job.get("id"):
            return
        import runpod

        runpod.serverless.progress_update(job, update)

    return report


def handler(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job: ``job["input"]`` names a ``pipeline`` and carries its ``params``."""
    payload = job.get("input")
    if not isinstance(payload, dict):
        return {"error": "input must be a JSON object with a 'pipeline' field"}
    name = payload.get("pipeline", "echo")
    try:
        pipeline = pipelines.get(name)
    except KeyError as exc:
        return {"error": str(exc.args[0])}
    params = payload.get("params") or {}
    if not isinstance(params, dict):
        return {"error": "params must be a JSON object"}
    inputs = payload.get("inputs") or {}
    return pipeline.run(inputs, params, _progress_reporter(job))
