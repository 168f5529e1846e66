"""A real runpod SDK worker for the conformance suite, in the handler shape ``SHAPE`` names.

Shapes: ``sync``, ``async``, ``gen``, ``agen`` (generators; ``AGGREGATE=1`` sets
``return_aggregate_stream``), ``batch`` (async, ``concurrency_modifier`` -> 3).
``input.mode`` picks the behaviour (non-generator shapes):

- ``echo``: ``{"echo": input, "env": RUNPOD_* variables, "s3Config": job's s3Config}``
- ``size``: returns ``{"blob": "x" * bytes}``; ``length``: the length of ``input.blob``
- ``sleep``: sleeps ``seconds`` (blocking in ``sync``), then touches ``done_file`` if given
- ``raise``, ``error`` (string), ``error_dict``, ``progress``, ``refresh``, ``crash``
"""

import gpu_worker.boot  # noqa: F401 - fast runpod import, children tied to this process

# isort: split
import asyncio
import os
import pathlib
import time

import runpod

SHAPE = os.environ.get("SHAPE", "sync")
STARTUP_DELAY = float(os.environ.get("STARTUP_DELAY", "0"))


def behave(job, sleep):
    inp = job["input"]
    mode = inp.get("mode", "echo")
    if mode == "echo":
        env = {k: v for k, v in os.environ.items() if k.startswith("RUNPOD_")}
        env.pop("RUNPOD_AI_API_KEY", None)
        return {"echo": inp, "env": env, "s3Config": job.get("s3Config"), "pid": os.getpid()}
    if mode == "size":
        return {"blob": "x" * int(inp["bytes"])}
    if mode == "length":
        return {"length": len(inp["blob"])}
    if mode == "raise":
        raise ValueError(inp.get("message", "handler said no"))
    if mode == "error":
        return {"error": inp.get("message", "bad input"), "partial": 1}
    if mode == "error_dict":
        return {"error": {"code": 7, "why": "dict errors"}}
    if mode == "refresh":
        return {"refresh_worker": True, "pid": os.getpid()}
    if mode == "crash":
        os._exit(int(inp.get("code", 3)))
    if mode == "progress":
        runpod.serverless.progress_update(job, {"percent": 50})
    return None  # sleep and progress: the caller sleeps


def finish_sleep(job):
    inp = job["input"]
    if inp.get("done_file"):
        pathlib.Path(inp["done_file"]).write_text(job["id"])
    return {"slept": inp.get("seconds", 1), "pid": os.getpid()}


def sync_handler(job):
    result = behave(job, time.sleep)
    if result is not None:
        return result
    time.sleep(float(job["input"].get("seconds", 1)))
    return finish_sleep(job)


async def async_handler(job):
    result = behave(job, asyncio.sleep)
    if result is not None:
        return result
    await asyncio.sleep(float(job["input"].get("seconds", 1)))
    return finish_sleep(job)


def gen_handler(job):
    inp = job["input"]
    for i in range(int(inp.get("chunks", 3))):
        time.sleep(float(inp.get("gap", 0.05)))
        if inp.get("fail_at") == i:
            raise RuntimeError(f"chunk {i} failed")
        yield {"chunk": i}


async def agen_handler(job):
    inp = job["input"]
    for i in range(int(inp.get("chunks", 3))):
        await asyncio.sleep(float(inp.get("gap", 0.05)))
        yield {"chunk": i}


HANDLERS = {
    "sync": sync_handler,
    "async": async_handler,
    "batch": async_handler,
    "gen": gen_handler,
    "agen": agen_handler,
}

if __name__ == "__main__":
    if STARTUP_DELAY:
        time.sleep(STARTUP_DELAY)  # a slow cold start (model loading) before the SDK starts
    config = {"handler": HANDLERS[SHAPE]}
    if os.environ.get("AGGREGATE"):
        config["return_aggregate_stream"] = True
    if SHAPE == "batch":
        config["concurrency_modifier"] = lambda current: 3
    runpod.serverless.start(config)
