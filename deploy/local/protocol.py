"""The worker side of one endpoint, as the runpod SDK speaks it: the job-take and job-stop
long-polls, job-done and job-stream posts, and heartbeats (runpod-sdk-protocol.md).

Each call reads or changes state through ``dispatch``; the only asyncio here is the
waiting of the two long-polls.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any

from deploy.local import workers as wk
from deploy.local.dispatch import Dispatch
from deploy.local.jobs import Job
from deploy.runpod.vocabulary import COMPLETED, FAILED, IN_PROGRESS

log = logging.getLogger("deploy.local")

STOP_RESEND_INTERVAL_S = 0.5


class WorkerProtocol:
    def __init__(self, dispatch: Dispatch) -> None:
        self.dispatch = dispatch
        self.opts = dispatch.opts
        self.fleet = dispatch.fleet
        self.jobs = dispatch.jobs

    def worker_for_key(self, worker_id: str, key: str) -> wk.Worker | None:
        w = self.fleet.get(worker_id)
        if w is None or not w.alive or not key:
            return None
        return w if hmac.compare_digest(w.key.encode(), key.encode()) else None

    async def take(self, w: wk.Worker, batch_size: int, *, job_in_progress: bool) -> list[Job]:
        """Long-poll for up to ``batch_size`` jobs; ``[]`` after ``take_timeout``.

        ``job_in_progress`` is the SDK's own word: false means the worker runs nothing,
        so jobs it was told to stop have ended.
        """
        take_at = time.perf_counter()
        self._first_take(w)
        if not job_in_progress and w.stopped_jobs:
            w.stopped_jobs.clear()
            w.settle(time.monotonic())
            self.dispatch.poke()
        if w.stopping or self.dispatch.closing:
            return []
        jobs = self.dispatch.hand(w, batch_size, take_at)
        if jobs:
            return jobs
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        w.take_waiter = fut
        w.take_batch = batch_size
        w.take_at = take_at
        self.dispatch.take_waiters.append(w)
        try:
            await asyncio.wait({fut}, timeout=self.opts.take_timeout)
        except asyncio.CancelledError:
            # The worker hung up. Anything already handed to it goes back to the queue.
            if fut.done() and not fut.cancelled():
                for job in fut.result():
                    self.dispatch.put_back(job, w)
            raise
        finally:
            if w.take_waiter is fut:
                w.take_waiter = None
            if not fut.done():
                fut.set_result([])
        return fut.result()

    def _first_take(self, w: wk.Worker) -> None:
        if w.took_any:
            return
        w.took_any = True
        w.ready_at = w.life.ready_at = time.time()
        self.fleet.save_life(w)
        w.settle(time.monotonic())
        if self.dispatch.crash.reset():
            log.info("worker %s is taking jobs: crash loop over", w.id)

    async def wait_stop_signals(self, w: wk.Worker) -> list[str]:
        if w.stopping or self.dispatch.closing:
            # An empty answer makes the SDK sleep 1 s before it sees it is shutting down;
            # a non-empty one (an id that names no job, so nothing is cancelled) does not.
            return w.drain_stops(time.monotonic()) or [f"{w.id}-shutdown"]
        if w.pending_stops:
            return w.drain_stops(time.monotonic())
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        w.stop_waiter = fut
        timeout = STOP_RESEND_INTERVAL_S if w.resend_stops else self.opts.take_timeout
        try:
            await asyncio.wait({fut}, timeout=timeout)
        finally:
            if w.stop_waiter is fut:
                w.stop_waiter = None
        if w.stopping or self.dispatch.closing:
            return w.drain_stops(time.monotonic()) or [f"{w.id}-shutdown"]
        return w.drain_stops(time.monotonic())

    def job_done(self, w: wk.Worker, job_id: str, body: Any) -> None:
        """A POST to job-done: a progress update, or the job's final result."""
        if w.stopped_jobs.pop(job_id, None) is not None:
            w.settle(time.monotonic())
            self.dispatch.poke()
        job = self.jobs.get(job_id)
        if job is None or job.worker_id != w.id or job.status != IN_PROGRESS:
            return  # late result for a cancelled, timed-out or requeued job: ignored
        if not isinstance(body, dict):
            body = {"output": body}
        if body.get("status") == IN_PROGRESS:
            job.progress = body.get("output")
            return
        job.timings["result"] = time.perf_counter()
        w.jobs_done += 1
        error = body.get("error")
        if isinstance(error, str):
            self.dispatch.finish(job, FAILED, output=body.get("output"), error=error)
        elif error is not None:
            # RunPod only understands a string error: anything else ends the job COMPLETED
            # with no output (runpod-python#299). Say so here, where an operator looks.
            log.warning(
                "job %s: the handler returned a non-string 'error' (%s); RunPod marks such "
                "a job COMPLETED without output, so does this endpoint. Return a string.",
                job.id,
                type(error).__name__,
            )
            self.dispatch.finish(job, COMPLETED)
        else:
            self.dispatch.finish(job, COMPLETED, output=body.get("output"))
        if body.get("stopPod"):
            self.fleet.stop(w, "the handler asked for a fresh worker (refresh_worker)")
        self.dispatch.poke()

    def job_stream(self, w: wk.Worker, job_id: str, body: Any) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.worker_id != w.id or job.status != IN_PROGRESS:
            return
        job.is_stream = True
        job.stream.append(body.get("output") if isinstance(body, dict) else body)

    def ping(self, w: wk.Worker, query: dict[str, str]) -> None:
        """A heartbeat: the SDK lists the ids of the jobs it is still running."""
        if query.get("status") == "unhealthy":
            w.last_error = (
                f"failed start-up check {query.get('check', '?')}: {query.get('reason', '')}"
            )
        running = {i for i in query.get("job_id", "").split(",") if i}
        w.reported_jobs = running
        ended = [jid for jid in w.stopped_jobs if jid not in running]
        for jid in ended:
            del w.stopped_jobs[jid]
        if ended:
            w.settle(time.monotonic())
            self.dispatch.poke()
