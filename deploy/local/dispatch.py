"""Where one endpoint's jobs meet its workers: hand queued jobs to workers waiting in a
job-take long-poll, take them back, finish them, tell workers to stop them, and what a
worker's exit means for the jobs it held.

The job states are ``jobqueue``'s and the processes the ``fleet``'s; this module keeps the
two in step (a worker's current jobs, its billed life, its busy/idle state) and pushes
each job's deadlines (execution timeout, ttl, result retention) onto the heap the
endpoint's timer task pops (``timer``). What a finished job means outside (a ``/runsync``
answer, a webhook) goes to the ``on_finished`` callback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from deploy.local import deadlines as dl
from deploy.local import workers as wk
from deploy.local.crashloop import CrashLoop
from deploy.local.fleet import Fleet
from deploy.local.jobqueue import JobQueue
from deploy.local.jobs import Job
from deploy.local.options import EndpointOptions
from deploy.runpod.vocabulary import FAILED, IN_PROGRESS, exit_meaning

log = logging.getLogger("deploy.local")


class Dispatch:
    def __init__(
        self,
        *,
        opts: EndpointOptions,
        jobs: JobQueue,
        fleet: Fleet,
        crash: CrashLoop,
        on_finished: Callable[[Job], None],
        poke: Callable[[], None],
    ) -> None:
        self.opts = opts
        self.jobs = jobs
        self.fleet = fleet
        self.crash = crash
        self.deadlines = dl.Deadlines()
        self.on_finished = on_finished
        self.poke = poke
        # Workers waiting in a job-take long-poll, first come first served.
        self.take_waiters: list[wk.Worker] = []
        # The endpoint is shutting down: nothing more is handed out or started.
        self.closing = False

    def worker(self, worker_id: str | None) -> wk.Worker | None:
        return self.fleet.get(worker_id or "")

    # ---- handing jobs out and taking them back -------------------------------------

    def hand(self, w: wk.Worker, n: int, take_at: float) -> list[Job]:
        """Up to ``n`` queued jobs to ``w``, each with its execution timeout pushed."""
        now = time.time()
        jobs = self.jobs.take(w.id, n, now)
        for job in jobs:
            if take_at:
                job.timings["take"] = take_at
            w.current_jobs.add(job.id)
            w.life.job_started(job.id, now)
            timeout = dl.execution_timeout_s(job.policy, self.opts.execution_timeout)
            self.push(time.monotonic() + timeout, dl.EXEC, job.id, job.attempt)
        if jobs:
            w.settle(time.monotonic())
            self.fleet.save_life(w)
        return jobs

    def queued_changed(self) -> None:
        """Jobs joined the queue: hand them to workers waiting in a job-take long-poll."""
        while self.jobs.queue and self.take_waiters:
            w = self.take_waiters.pop(0)
            fut = w.take_waiter
            if fut is None or fut.done() or w.stopping or not w.alive:
                continue
            w.take_waiter = None
            fut.set_result(self.hand(w, w.take_batch, w.take_at))
        self.poke()

    def put_back(self, job: Job, w: wk.Worker) -> None:
        """A worker hung up on a job it was handed: it goes back first in the queue."""
        self.release(job, w)
        if job.status == IN_PROGRESS and job.worker_id == w.id:
            self.jobs.put_back(job, count_requeue=False)
        self.queued_changed()

    def release(self, job: Job, w: wk.Worker | None) -> None:
        """``w`` no longer holds ``job``: its billed life and busy/idle state say so."""
        if w is not None and job.id in w.current_jobs:
            w.current_jobs.discard(job.id)
            w.life.job_ended(job.id, time.time())
            self.fleet.save_life(w)
            w.settle(time.monotonic())

    # ---- ending jobs ----------------------------------------------------------------

    def finish(
        self, job: Job, status: str, *, output: Any = None, error: str | None = None
    ) -> None:
        self.release(job, self.worker(job.worker_id))
        self.jobs.finish(job, status, time.time(), output=output, error=error)
        job.timings["finished"] = time.perf_counter()
        self.on_finished(job)
        self.schedule_retention(job, job.finished_at or time.time())

    def requeue_or_fail(self, job: Job, reason: str) -> None:
        if not self.jobs.may_requeue(job):
            self.finish(job, FAILED, error=f"{reason}; the job was already requeued once")
            return
        self.release(job, self.worker(job.worker_id))
        self.jobs.put_back(job, count_requeue=True)
        log.warning("job %s requeued once: %s", job.id, reason)

    def signal_stop(self, job: Job, why: str) -> None:
        """Tell the job's worker to stop it; the worker counts as busy until it has."""
        w = self.worker(job.worker_id)
        if w is None or not w.alive:
            return
        self.release(job, w)
        w.stopped_jobs[job.id] = time.monotonic()
        w.pending_stops.append(job.id)
        if w.stop_waiter is not None and not w.stop_waiter.done():
            w.stop_waiter.set_result(None)
        w.settle(time.monotonic())
        log.info("asking worker %s to stop job %s (%s)", w.id, job.id, why)

    def forget(self, job: Job) -> None:
        """The job's id answers 404 from now on (ttl, retention)."""
        self.jobs.remove(job)
        wake_waiters(job)

    # ---- deadlines ------------------------------------------------------------------

    def push(self, when: float, kind: str, job_id: str, token: int) -> None:
        self.deadlines.push(when, kind, job_id, token)
        self.poke()

    def schedule_ttl(self, job: Job, now_wall: float) -> None:
        ttl = dl.ttl_s(job.policy)
        if ttl:
            remaining = job.created_at + ttl - now_wall
            self.push(time.monotonic() + remaining, dl.TTL, job.id, 0)

    def schedule_retention(self, job: Job, now_wall: float) -> None:
        assert job.finished_at is not None
        # RunPod keeps /runsync results 1 minute, /run results 30 minutes.
        keep = self.opts.runsync_retention if job.sync else self.opts.retention
        remaining = job.finished_at + keep - now_wall
        self.push(time.monotonic() + remaining, dl.RETENTION, job.id, job.retried)

    # ---- a worker's exit ------------------------------------------------------------

    def worker_exited(self, w: wk.Worker, code: int) -> None:
        """The fleet saw a worker exit: requeue what it held, count a start-up crash."""
        meaning = exit_meaning(code)
        # An exit code explains a worker that died on its own; one this endpoint stopped
        # (idle, shutting down) was SIGKILLed past its grace, not out of memory: say that.
        how = (
            f"was stopped by the endpoint ({w.stop_reason})"
            if w.stopping
            else f"exited with code {code} ({meaning})"
        )
        for job in self.jobs.held_by(w.id):
            self.requeue_or_fail(job, f"worker {w.id} {how} while running the job")
        if w.exited(code):
            w.last_error = (
                self.fleet.port_collision(w) or w.last_error or f"exit code {code}: {meaning}"
            )
            log.warning("worker %s exited with code %s (%s)", w.id, code, meaning)
        if not w.stopping and not w.took_any:
            self._count_crash(w, code, meaning)
        self.queued_changed()

    def _count_crash(self, w: wk.Worker, code: int, meaning: str) -> None:
        error = f"exit code {code}: {meaning}"
        if w.last_error and w.last_error != error:
            error += f" ({w.last_error})"
        active = self.crash.record(error, wk.tail(w.log_path, 20), time.monotonic())
        if active and self.opts.fail_fast_crash_loop:
            reason = self.crash.reason()
            for job_id in list(self.jobs.queue):
                self.finish(self.jobs.jobs[job_id], FAILED, error=reason)


def wake_waiters(job: Job) -> None:
    """A /runsync waiting on the job answers now (it ended or is gone)."""
    if job.done is not None:
        job.done.set()
