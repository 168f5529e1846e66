"""The echo pipeline: returns its parameters. Used by tests, benchmarks and the demo.

Optional parameters exercise the worker's plumbing without a model: ``sleep_s`` (seconds to
sleep, checking for cancellation), ``fail`` (a message to raise with), ``output_bytes`` (write
an output file of that many bytes) and ``return_input`` (send that input back as the output).
Their declaration bounds them like any pipeline's. Inputs are downloaded and described by size
and sha256.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

from gpu_worker.errors import InputError
from gpu_worker.pipelines import SAME, Input, Pipeline, PipelineResult, Progress, RunContext


class EchoError(RuntimeError):
    """Raised on request (``params.fail``) so tests can see a handler error end to end."""


def _describe(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _sleep(seconds: float, progress: Progress, ctx: RunContext) -> None:
    """Sleep, reporting the share slept (throttled like any progress) so live pages and the
    progress-latency benchmark have something that rises; a cancel ends it at once."""
    deadline = time.monotonic() + seconds
    while not ctx.cancel.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        percent = round(100 * (seconds - left) / seconds)
        progress(
            {
                "phase": "echo",
                "message": f"sleeping: {seconds - left:.1f} of {seconds:g} s",
                "percent": percent,
            }
        )
        ctx.cancel.wait(min(left, 0.25))


def run(
    inputs: dict[str, Path], params: dict[str, Any], progress: Progress, ctx: RunContext
) -> PipelineResult:
    progress({"phase": "echo", "percent": 0}, True)
    if params.get("sleep_s"):
        _sleep(float(params["sleep_s"]), progress, ctx)
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
        output_file = ctx.output_path(".bin")
        pattern = bytes(range(256)) * 4096
        with open(output_file, "wb") as out:
            left = params["output_bytes"]
            while left:
                out.write(pattern[: min(left, len(pattern))])
                left -= min(left, len(pattern))
    progress({"phase": "echo", "percent": 100}, True)
    return PipelineResult(
        result={"echo": params, "inputs": described},
        output_file=output_file,
        items=len(inputs),
    )


# No parameter has a default: echo sends back exactly what it was given.
PIPELINE = Pipeline(
    name="echo",
    run=run,
    title="Echo",
    description="Returns its parameters; for tests and benchmarks.",
    help="Sends back the parameters it was given and the size and sha256 of each input.",
    inputs=(Input("file", ("any",), required=False),),
    extra_inputs=True,
    params={
        "sleep_s": {
            "type": "number",
            "minimum": 0,
            "maximum": 3600,
            # The app lowers the bound to its EXECUTION_TIMEOUT_S: a longer sleep would time out.
            "x-max-setting": "execution_timeout_s",
            "title": "Sleep (s)",
            "description": "seconds to sleep on the GPU, checking for cancellation",
        },
        "fail": {
            "type": "string",
            "maxLength": 500,
            "title": "Fail with",
            "description": "make the handler fail with this message",
        },
        "output_bytes": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2**30,
            "title": "Output bytes",
            "description": "write a result file of this many bytes (at most 1 GiB)",
        },
        "return_input": {
            "type": "string",
            "maxLength": 64,
            "title": "Return input",
            "description": "send the input of this name back as the result file",
        },
    },
    # Other values are echoed back as given: the local endpoint's tests and benchmarks tag
    # their jobs this way. The app still sends only the declared ones.
    extra_params=True,
    output={"any": SAME},
)
