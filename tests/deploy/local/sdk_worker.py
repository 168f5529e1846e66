"""A real runpod SDK worker with handlers the SDK tests need (started by the endpoint).

``input.mode``: ``echo`` (default), ``sleep`` (``seconds``), ``raise``, ``error`` (returns
an ``error`` key), ``progress``, ``refresh`` (``refresh_worker``); with
``SDK_WORKER_GENERATOR`` set, a generator handler yielding ``chunks`` chunks.
Async handlers, so concurrent jobs and stop signals work; ``SDK_WORKER_CONCURRENCY`` sets
how many jobs it takes at once (more than one makes the SDK use job-take-batch).
"""

import gpu_worker.boot  # noqa: F401 - fast runpod import, children tied to this process

# isort: split
import asyncio
import os

import runpod


async def run(job):
    inp = job["input"]
    mode = inp.get("mode", "echo")
    if mode == "sleep":
        await asyncio.sleep(float(inp.get("seconds", 1)))
        return {"slept": inp.get("seconds", 1)}
    if mode == "raise":
        raise ValueError(inp.get("message", "handler said no"))
    if mode == "error":
        return {"error": inp.get("message", "bad input"), "partial": 1}
    if mode == "progress":
        runpod.serverless.progress_update(job, {"percent": 50})
        await asyncio.sleep(float(inp.get("seconds", 2)))
        return {"done": True}
    if mode == "refresh":
        return {"refresh_worker": True, "pid": os.getpid()}
    return {"echo": inp, "pid": os.getpid()}


async def stream(job):
    inp = job["input"]
    for i in range(int(inp.get("chunks", 3))):
        await asyncio.sleep(float(inp.get("gap", 0.05)))
        yield {"chunk": i}


async def gen_handler(job):
    async for chunk in stream(job):
        yield chunk


if __name__ == "__main__":
    concurrency = int(os.environ.get("SDK_WORKER_CONCURRENCY", "1"))
    runpod.serverless.start(
        {
            "handler": gen_handler if os.environ.get("SDK_WORKER_GENERATOR") else run,
            "return_aggregate_stream": True,
            "concurrency_modifier": lambda current: concurrency,
        }
    )
