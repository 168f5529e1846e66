"""One endpoint's timer task: apply the deadlines that came due, then the scaling plan.

Nothing polls at a fixed rate: handlers change state and ``poke`` the task, which sleeps
until the next deadline, the scaler's next look (``scaling.plan``'s ``wake_at``) or the
next poke, whichever is first. The scaling decision itself is ``scaling``'s, from plain
values (``observe``); this module only applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from deploy.local import deadlines as dl
from deploy.local import scaling
from deploy.local.dispatch import Dispatch
from deploy.local.jobs import Job
from deploy.runpod.vocabulary import IN_PROGRESS, TIMED_OUT

log = logging.getLogger("deploy.local")


class Timer:
    def __init__(self, dispatch: Dispatch, endpoint_id: str) -> None:
        self.dispatch = dispatch
        self.endpoint_id = endpoint_id
        self.opts = dispatch.opts
        self.fleet = dispatch.fleet
        self.jobs = dispatch.jobs
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop())
        self.poke()

    def cancel(self) -> None:
        if self._task:
            self._task.cancel()

    def poke(self) -> None:
        """Ask the timer task to re-evaluate deadlines and scaling soon."""
        if self._wake is not None:
            self._wake.set()

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                delay = self.tick()
            except Exception:  # noqa: BLE001 - the timer must survive one bad tick
                log.exception("endpoint %s: timer tick failed", self.endpoint_id)
                delay = 1.0
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def tick(self) -> float | None:
        """Apply what is due; returns the seconds until the next look (None: a poke)."""
        now = time.monotonic()
        deadlines = self.dispatch.deadlines
        for due in deadlines.pop_due(now):
            self._apply_deadline(due)
        next_at = [t for t in (deadlines.next_at(),) if t is not None]
        next_at += self._scale(now)
        return max(0.0, min(next_at) - time.monotonic()) if next_at else None

    # ---- deadlines ------------------------------------------------------------------

    def _apply_deadline(self, due: dl.Due) -> None:
        job = self.jobs.get(due.job_id)
        if due.kind == dl.EXEC:
            self._execution_timeout(job, due)
        elif job is None:
            return
        elif due.kind == dl.TTL and not job.terminal:
            # RunPod: the ttl covers queue and run time; past it the job is deleted (404).
            if job.status == IN_PROGRESS:
                self.dispatch.signal_stop(job, "ttl expired")
            self.dispatch.forget(job)
        elif due.kind == dl.RETENTION and job.terminal and job.retried == due.token:
            self.dispatch.forget(job)

    def _execution_timeout(self, job: Job | None, due: dl.Due) -> None:
        """RunPod fails a job that runs past its execution timeout and stops the worker."""
        if job is not None and job.status == IN_PROGRESS and job.attempt == due.token:
            w = self.dispatch.worker(job.worker_id)
            seconds = dl.execution_timeout_s(job.policy, self.opts.execution_timeout)
            self.dispatch.finish(
                job, TIMED_OUT, error=f"execution timeout: the job ran longer than {seconds:g}s"
            )
            if w is not None:
                self.fleet.stop(w, f"job {job.id} ran past its execution timeout")
            return
        # A job that was cancelled or expired still counts against its execution timeout:
        # a worker still running it then is stopped, so it cannot stay busy for ever.
        for w in self.fleet.workers.values():
            if due.job_id in w.stopped_jobs and w.alive:
                self.fleet.stop(
                    w, f"still running stopped job {due.job_id} past its execution timeout"
                )

    # ---- scaling --------------------------------------------------------------------

    def observe(self, now: float) -> scaling.Observed:
        """What the scaler needs to know, as plain values."""
        view = self.jobs.view()
        return scaling.Observed(
            now=now,
            workers=tuple(
                scaling.WorkerView(w.id, w.state, w.idle_since) for w in self.fleet.serving()
            ),
            queued=view.queued,
            queued_any=view.queued_any,
            in_progress=view.in_progress,
            oldest_queued_at=view.oldest_queued_at,
            last_start_at=self.fleet.last_start_at,
            spawn_blocked_until=self.dispatch.crash.next_spawn_at,
        )

    def policy(self) -> scaling.Policy:
        o = self.opts
        return scaling.Policy(
            o.scaler, o.scaler_value, o.workers_min, o.workers_max, o.idle_timeout
        )

    def _scale(self, now: float) -> list[float]:
        """Apply the scaling plan; returns the times at which to look again."""
        if self.dispatch.closing:
            return []
        plan = scaling.plan(self.observe(now), self.policy())
        self.fleet.start(plan.start)
        for worker_id in plan.stop:
            self.fleet.stop(self.fleet.workers[worker_id], f"idle for {self.opts.idle_timeout:g}s")
        return [*plan.wake_at, *self.fleet.kill_overdue(now)]
