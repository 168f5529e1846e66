"""A real runpod SDK worker standing in for a long GPU job (the ``video`` endpoint's model in
the several-endpoint tests and ``python -m bench pipeline``'s endpoints section): every job
sleeps ``LONG_WORKER_S`` seconds, then returns.

What they measure is routing and isolation between endpoints, not the model: a real video
model would make "long" depend on this machine's speed.

    worker_command=LONG_WORKER_COMMAND, env={"LONG_WORKER_S": "25"}
"""

import gpu_worker.boot  # noqa: F401 - fast runpod import, children tied to this process

# isort: split
import asyncio
import os

import runpod


async def run(job):
    seconds = float(os.environ.get("LONG_WORKER_S", "20"))
    await asyncio.sleep(seconds)
    return {"slept": seconds, "pipeline": job["input"].get("pipeline")}


if __name__ == "__main__":
    runpod.serverless.start({"handler": run})
