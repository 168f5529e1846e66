"""The echo pipeline: returns its parameters. Used by tests, benchmarks and the demo.

Optional parameters exercise the worker's plumbing without a model: ``sleep_s`` (seconds to
sleep, checking for cancellation), ``fail`` (a message to raise with), ``output_bytes`` (write
an output file of that many bytes) and ``return_input`` (send that input back as the output).
Inputs are downloaded and described by size and sha256.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from gpu_worker.errors import InputError
from gpu_worker.pipelines import Pipeline, PipelineResult, Progress, RunContext


class EchoError(RuntimeError):
    """Raised on request (``params.fail``) so tests can see a handler error end to end."""


def _describe(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def run(
    inputs: dict[str, Path], params: dict[str, Any], progress: Progress, ctx: RunContext
) -> PipelineResult:
    sleep_s = params.get("sleep_s", 0) or 0
    if not isinstance(sleep_s, int | float) or isinstance(sleep_s, bool) or sleep_s < 0:
        raise InputError(f"params.sleep_s: expected a number of seconds >= 0, got {sleep_s!r}")
    progress({"phase": "echo", "percent": 0}, True)
    if sleep_s > 0:
        ctx.cancel.wait(float(sleep_s))
    if params.get("fail"):
        raise EchoError(str(params.get("fail")))
    described = {name: _describe(path) for name, path in inputs.items()}
    output_file = None
    if params.get("return_input") is not None:
        name = params["return_input"]
        if name not in inputs:
            raise InputError(f"params.return_input: no input called {name!r} was given")
        output_file = ctx.output_path(".bin")
        shutil.copyfile(inputs[name], output_file)
    elif params.get("output_bytes") is not None:
        size = params["output_bytes"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InputError(f"params.output_bytes: expected an integer >= 0, got {size!r}")
        output_file = ctx.output_path(".bin")
        pattern = bytes(range(256)) * 4096
        with open(output_file, "wb") as out:
            left = size
            while left:
                out.write(pattern[: min(left, len(pattern))])
                left -= min(left, len(pattern))
    progress({"phase": "echo", "percent": 100}, True)
    return PipelineResult(
        result={"echo": params, "inputs": described},
        output_file=output_file,
        items=len(inputs),
    )


PIPELINE = Pipeline(
    name="echo",
    run=run,
    params=None,  # free-form: echo returns whatever it is given
    description="Returns its parameters; for tests and benchmarks.",
)
