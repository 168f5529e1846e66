"""Our worker takes its next job as soon as its slot frees (``gpu_worker/scaling.py``).

The SDK's scaler sleeps a fixed 1 s in ``get_jobs`` once its slot is busy, and 0.1 s in
``run_jobs`` when idle. Both scalers are driven here with the SDK's own local-test hooks (a
jobs fetcher and a jobs handler) and every sleep they ask for is recorded: the SDK's asks for
the 1 s sleep between back-to-back jobs, ours never does, and runs the same jobs in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect

from runpod.serverless import worker
from runpod.serverless.modules import rp_scale

from gpu_worker import scaling

# sha256 of the SDK (runpod==1.12.0) source that gpu_worker/scaling.py relies on or copies.
PINNED = {
    "JobScaler.get_jobs": "e08b2e0cfb262643",
    "JobScaler.run_jobs": "74cd623de98ef8b4",
    "JobScaler.set_scale": "e137f173c456d41b",
    "JobScaler.handle_job": "fe2350bfac7373f7",
    "JobScaler.__init__": "a6f8e34dff6a9dce",
    "run_worker": "ce0b9b3f79f9f9d3",
}


def test_the_sdk_code_the_patch_relies_on_is_unchanged():
    functions = (
        scaling.JobScaler.get_jobs,
        scaling.JobScaler.run_jobs,
        scaling.JobScaler.set_scale,
        scaling.JobScaler.handle_job,
        scaling.JobScaler.__init__,
        worker.run_worker,
    )
    seen = {
        f.__qualname__: hashlib.sha256(inspect.getsource(f).encode()).hexdigest()[:16]
        for f in functions
    }
    assert seen == PINNED, (
        "runpod's JobScaler changed: re-read its rp_scale.py against gpu_worker/scaling.py "
        "(the fixed sleeps it shortens, the run_jobs loop it copies), then update PINNED"
    )
    # run_worker builds the scaler through the module attribute that install() replaces.
    assert "rp_scale.JobScaler(config)" in inspect.getsource(worker.run_worker)
    assert "await asyncio.sleep(1)  # don't go rapidly" in inspect.getsource(
        scaling.JobScaler.get_jobs
    )


def drive(scaler_class, count: int, monkeypatch) -> tuple[list[str], list[float]]:
    """Run ``count`` jobs back to back through a scaler; return the job order and every
    sleep the SDK's module asked for."""
    real_sleep = asyncio.sleep
    slept: list[float] = []

    async def recording_sleep(delay, result=None):
        slept.append(delay)
        return await real_sleep(min(delay, 0.05), result)

    monkeypatch.setattr(rp_scale.asyncio, "sleep", recording_sleep)
    waiting = [{"id": f"job-{i}", "input": {}} for i in range(count)]
    ran: list[str] = []

    async def main() -> None:
        async def fetch(session, wanted):
            if waiting:
                return [waiting.pop(0)]
            await real_sleep(0.01)
            return []

        async def handle(session, config, job):
            await real_sleep(0.02)  # the job's work
            ran.append(job["id"])
            if len(ran) == count:
                scaler.kill_worker()

        scaler = scaler_class({"jobs_fetcher": fetch, "jobs_handler": handle})
        await asyncio.wait_for(asyncio.gather(scaler.get_jobs(None), scaler.run_jobs(None)), 60)

    asyncio.run(main())
    return ran, slept


def test_back_to_back_jobs_never_wait_out_the_sdks_fixed_sleep(monkeypatch):
    jobs = 4
    sdk_order, sdk_sleeps = drive(rp_scale.JobScaler, jobs, monkeypatch)
    assert sdk_order == [f"job-{i}" for i in range(jobs)]
    assert 1 in sdk_sleeps  # what the SDK does between jobs (the test can fail)

    our_order, our_sleeps = drive(scaling.PromptJobScaler, jobs, monkeypatch)
    assert our_order == sdk_order
    assert 1 not in our_sleeps and 0.1 not in our_sleeps, our_sleeps


def test_install_affects_only_this_process_scaler(monkeypatch):
    monkeypatch.setattr(rp_scale, "JobScaler", rp_scale.JobScaler)
    scaling.install()
    assert rp_scale.JobScaler is scaling.PromptJobScaler
