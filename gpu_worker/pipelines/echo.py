"""The echo pipeline: returns its parameters. Used by tests, benchmarks and the demo."""

from __future__ import annotations

import time
from typing import Any

from gpu_worker.pipelines import Pipeline, Progress


class EchoError(RuntimeError):
    """Raised on request (``params.fail``) so tests can see a handler error end to end."""


def run(inputs: dict[str, Any], params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    sleep_s = float(params.get("sleep_s", 0) or 0)
    progress({"phase": "echo", "percent": 0})
    if sleep_s > 0:
        time.sleep(sleep_s)
    if params.get("fail"):
        raise EchoError(str(params.get("fail")))
    progress({"phase": "echo", "percent": 100})
    return {"echo": params, "inputs": inputs}


PIPELINE = Pipeline(
    name="echo",
    run=run,
    params={"sleep_s": "number of seconds to sleep", "fail": "message to raise with"},
    description="Returns its parameters; for tests and benchmarks.",
)
