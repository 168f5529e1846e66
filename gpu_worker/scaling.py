"""No idle gap between jobs: our worker takes its next job the moment its slot frees.

The runpod SDK (pinned: runpod==1.12.0) runs two loops in ``rp_scale.JobScaler``:

- ``get_jobs`` asks for jobs while slots are free; once its one slot is busy it sleeps a
  fixed **1 s** and looks again (``await asyncio.sleep(1)  # don't go rapidly``). A job that
  ends just after that sleep began leaves the worker idle for up to 1 s (0.5 s on average)
  with jobs waiting. On RunPod that idle time is billed: for 3 s jobs about a seventh of the
  bill, for 1 s jobs a third.
- ``run_jobs`` starts queued jobs; with nothing running and nothing queued it sleeps
  **0.1 s**, so a job fetched meanwhile waits up to another 100 ms to start.

``PromptJobScaler`` changes exactly those two waits, nothing else:

- ``set_scale`` (which ``get_jobs`` awaits at the top of every turn) first waits until a
  slot is free, woken by ``handle_job`` the moment a job has ended (its result already
  posted), with the SDK's 1 s as the longest wait. ``get_jobs`` then always finds a free
  slot and asks for the next job at once, never reaching its fixed sleep.
- ``run_jobs`` is the SDK's loop with its idle 0.1 s sleep replaced by a wait that a newly
  queued job ends (still at most 0.1 s).

``install()`` makes ``runpod.serverless.start`` build this scaler (``worker.run_worker``
looks up ``rp_scale.JobScaler`` when it runs). Only ``python -m gpu_worker`` calls it:
unmodified SDK workers, such as other handlers under the local endpoint, keep the SDK's
behaviour. ``tests/gpu_worker/test_scaling.py`` pins the SDK source this relies on and fails
when an SDK upgrade changes it; re-read the SDK's ``rp_scale.py`` then.
"""

from __future__ import annotations

import asyncio
from typing import Any

from runpod.serverless.modules import rp_scale
from runpod.serverless.modules.rp_scale import JobScaler, log

# The SDK's waits that this module shortens, for the record (and the benchmark).
SDK_FULL_SLOT_SLEEP_S = 1.0
SDK_IDLE_RUN_SLEEP_S = 0.1


class _SignallingQueue(asyncio.Queue):
    """The jobs queue, telling ``run_jobs`` when a job is put in."""

    def __init__(self, maxsize: int, queued: asyncio.Event) -> None:
        super().__init__(maxsize=maxsize)
        self._queued = queued

    async def put(self, item: Any) -> None:
        await super().put(item)
        self._queued.set()


class PromptJobScaler(JobScaler):
    """``JobScaler`` without the fixed waits between one job's end and the next one's start."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._slot_freed = asyncio.Event()
        self._queued = asyncio.Event()
        self.jobs_queue = _SignallingQueue(self.current_concurrency, self._queued)

    async def set_scale(self) -> None:
        await super().set_scale()
        if not isinstance(self.jobs_queue, _SignallingQueue):
            # The SDK made a new queue for a new concurrency: keep it signalling.
            self.jobs_queue = _SignallingQueue(self.jobs_queue.maxsize, self._queued)
        while self.is_alive() and self.current_occupancy() >= self.current_concurrency:
            self._slot_freed.clear()
            if self.current_occupancy() < self.current_concurrency:
                break
            try:
                await asyncio.wait_for(self._slot_freed.wait(), SDK_FULL_SLOT_SLEEP_S)
            except TimeoutError:
                pass  # look again, as the SDK would after its sleep
            # Pick up a changed concurrency as the SDK's loop would.
            self.current_concurrency = self.concurrency_modifier(self.current_concurrency)

    async def handle_job(self, session: Any, job: dict) -> None:
        try:
            await super().handle_job(session, job)
        finally:
            self._slot_freed.set()

    async def run_jobs(self, session: Any) -> None:
        """The SDK's ``run_jobs`` (1.12.0), with the idle sleep waiting for a queued job."""
        tasks: set[asyncio.Task] = set()

        last_task_count = 0
        while self.is_alive() or not self.jobs_queue.empty():
            while len(tasks) < self.current_concurrency and not self.jobs_queue.empty():
                job = await self.jobs_queue.get()
                task = asyncio.create_task(self.handle_job(session, job))
                tasks.add(task)
                self.jobs_tasks[job["id"]] = task

            if tasks:
                current_task_count = len(tasks)
                if current_task_count != last_task_count:
                    log.info(f"Jobs in progress: {current_task_count}")
                    last_task_count = current_task_count

                done, _ = await asyncio.wait(
                    tasks, return_when=asyncio.FIRST_COMPLETED, timeout=SDK_IDLE_RUN_SLEEP_S
                )
                tasks.difference_update(done)

            else:
                # The SDK sleeps 0.1 s here; a job queued meanwhile starts at once instead.
                self._queued.clear()
                if self.jobs_queue.empty():
                    try:
                        await asyncio.wait_for(self._queued.wait(), SDK_IDLE_RUN_SLEEP_S)
                    except TimeoutError:
                        pass

        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, asyncio.CancelledError):
                log.error(f"JobScaler.run_jobs | Task failed during shutdown drain: {result}")


def install() -> None:
    """Make ``runpod.serverless.start`` run ``PromptJobScaler`` in this process."""
    rp_scale.JobScaler = PromptJobScaler
