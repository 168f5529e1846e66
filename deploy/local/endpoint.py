"""The local endpoint's core: the job queue, hand-off to workers and job state.

Everything runs on one asyncio loop. Handlers change state and poke one timer task,
which applies due deadlines (``deadlines``) and the scaling plan (``scaling``); nothing
polls at a fixed rate. The worker processes are the ``fleet``'s; crash-loop accounting
lives in ``crashloop``, webhooks in ``webhooks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from deploy.local import deadlines as dl
from deploy.local import scaling, webhooks
from deploy.local import workers as wk
from deploy.local.crashloop import CrashLoop
from deploy.local.fleet import Fleet
from deploy.local.jobs import TRANSITIONS, Job
from deploy.local.store import Store
from deploy.runpod.vocabulary import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    IN_QUEUE,
    QUEUE_DELAY,
    REQUEST_COUNT,
    TIMED_OUT,
    exit_meaning,
)

__all__ = ["QUEUE_DELAY", "REQUEST_COUNT", "Endpoint", "Options"]

log = logging.getLogger("deploy.local")

STOP_RESEND_S = 5.0
STOP_RESEND_INTERVAL_S = 0.5


@dataclass
class Options:
    """Every knob of the local endpoint; the CLI flags map one to one."""

    state_dir: Path
    api_key: str
    host: str = "127.0.0.1"
    port: int = 8765
    endpoint_id: str = "local"
    workers_min: int = 0
    workers_max: int = 1
    idle_timeout: float = 5.0
    execution_timeout: float = 600.0
    scaler: str = QUEUE_DELAY
    scaler_value: float = 4.0
    gpus: list[str] = field(default_factory=list)
    worker_command: list[str] = field(default_factory=list)
    retention: float = 1800.0
    runsync_retention: float = 60.0
    webhook_retry_delay: float = 10.0
    stop_grace: float = 5.0
    crash_loop_threshold: int = 3
    fail_fast_crash_loop: bool = False
    take_timeout: float = 30.0
    disabled: bool = False
    rate_limits: bool = True
    min_execution_timeout: float = 5.0
    min_ttl: float = 10.0
    worker_env: dict[str, str] = field(default_factory=dict)


class Endpoint:
    """State of one local endpoint. Create it, ``await start()``, ``await shutdown()``."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.counts: Counter[str] = Counter()
        self.low_priority_queued = 0
        self.requests: Counter[str] = Counter()
        self.worker_requests: Counter[str] = Counter()
        self.retried_total = 0
        self.crash = CrashLoop(threshold=opts.crash_loop_threshold)
        self.store = Store(opts.state_dir / "jobs.sqlite3")
        self.log_dir = opts.state_dir / "workers"
        self.base_url = f"http://127.0.0.1:{opts.port}"
        self._seq = itertools.count(self.store.max_seq() + 1)
        self.deadlines = dl.Deadlines()
        self._take_waiters: deque[wk.Worker] = deque()
        self._wake: asyncio.Event | None = None
        self._timer: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._http: aiohttp.ClientSession | None = None
        self._closing = False
        self.fleet = Fleet(
            command=opts.worker_command,
            env=lambda w: wk.worker_env(w, self.base_url, opts.endpoint_id, opts.worker_env),
            gpus=opts.gpus,
            stop_grace=opts.stop_grace,
            log_dir=self.log_dir,
            store=self.store,
            on_exit=self._worker_exited,
            spawn_task=self._spawn_task,
            poke=self.poke,
        )
        self.workers = self.fleet.workers

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        killed = wk.kill_leftovers(self.store.recorded_workers())
        if killed:
            log.warning("killed %d worker(s) a previous endpoint process left behind", killed)
        self.store.forget_all_workers()
        self._recover()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._timer = asyncio.create_task(self._timer_loop())
        self.poke()

    async def shutdown(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after the grace) and close the store."""
        self._closing = True
        await self.fleet.stop_all("endpoint shutting down")
        if self._timer:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._http:
            await self._http.close()
        self.store.close()

    def _recover(self) -> None:
        """Load persisted jobs: queued ones wait again; running ones lost their worker."""
        now = time.time()
        for rec in self.store.load_jobs():
            job = Job(rec)
            self.jobs[job.id] = job
            self._count(job, +1)
            if job.status == IN_PROGRESS:
                self._requeue_or_fail(
                    job, f"the endpoint restarted while worker {job.worker_id} ran the job"
                )
            elif job.status == IN_QUEUE:
                self.queue.append(job.id)
            if job.terminal:
                self._schedule_retention(job, now)
            else:
                self._schedule_ttl(job, now)

    def _spawn_task(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def poke(self) -> None:
        """Ask the timer task to re-evaluate deadlines and scaling soon."""
        if self._wake is not None:
            self._wake.set()

    # ---- job API -------------------------------------------------------------------

    def submit(self, payload: dict[str, Any], *, sync: bool, received: float) -> Job:
        now = time.time()
        job_id = f"sync-{uuid.uuid4()}" if sync else str(uuid.uuid4())
        job = Job(
            {
                "id": job_id,
                "seq": next(self._seq),
                "status": IN_QUEUE,
                "input": payload["input"],
                "webhook": payload.get("webhook"),
                "policy": payload.get("policy") or {},
                "s3_config": payload.get("s3Config"),
                "created_at": now,
            }
        )
        job.timings["received"] = received
        self.jobs[job.id] = job
        self._count(job, +1)
        self.store.save_job(job.record())
        self._schedule_ttl(job, now)
        self.queue.append(job.id)
        job.timings["enqueued"] = time.perf_counter()
        self._dispatch()
        self.poke()
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def cancel(self, job: Job) -> None:
        if job.terminal:
            return
        if job.status == IN_PROGRESS:
            self._signal_stop(job, "cancelled")
        self._finish(job, CANCELLED)

    def retry(self, job: Job) -> bool:
        """Put a FAILED or TIMED_OUT job back in the queue (same id, old result removed)."""
        if job.status not in (FAILED, TIMED_OUT):
            return False
        self._set_status(job, IN_QUEUE)
        job.output = job.error = job.worker_id = None
        job.started_at = job.finished_at = None
        job.progress = None
        job.stream = []
        job.stream_pos = 0
        job.timings = {}
        job.retried += 1
        self.retried_total += 1
        job.enqueued_mono = time.monotonic()
        self.store.save_job(job.record())
        self.queue.append(job.id)
        self._dispatch()
        self.poke()
        return True

    def purge_queue(self) -> int:
        """Remove every queued job; running ones are not touched (as on RunPod)."""
        removed = [jid for jid in self.queue if self._queued(jid)]
        for jid in removed:
            self._count(self.jobs.pop(jid), -1)
        self.queue.clear()
        self.store.delete_jobs(removed)
        self.poke()
        return len(removed)

    def _queued(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        return job is not None and job.status == IN_QUEUE

    async def wait_done(self, job: Job, timeout: float) -> None:
        if job.terminal:
            return
        if job.done is None:
            job.done = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(job.done.wait(), timeout)

    def health(self) -> dict[str, Any]:
        summary = self.worker_summary()
        return {
            "jobs": {
                "completed": self.counts[COMPLETED],
                "failed": self.counts[FAILED] + self.counts[TIMED_OUT],
                "inProgress": self.counts[IN_PROGRESS],
                "inQueue": self.counts[IN_QUEUE],
                "retried": self.retried_total,
            },
            "workers": {
                "idle": summary["idle"],
                "initializing": summary["initializing"],
                "ready": summary["idle"],
                "running": summary["running"],
                "throttled": summary["throttled"],
                "unhealthy": summary["unhealthy"],
            },
            "local": {"cancelled": self.counts[CANCELLED], "timedOut": self.counts[TIMED_OUT]},
        }

    def worker_summary(self) -> dict[str, int]:
        return self.fleet.summary()

    def describe_workers(self) -> dict[str, Any]:
        return {
            "workers": self.fleet.describe(),
            "summary": self.fleet.summary(),
            "crashLoop": self.crash.describe(),
        }

    # ---- worker protocol -----------------------------------------------------------

    def worker_for_key(self, worker_id: str, key: str) -> wk.Worker | None:
        w = self.workers.get(worker_id)
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
            self._refresh_state(w)
            self.poke()
        if w.stopping or self._closing:
            return []
        jobs = self._pop_jobs(w, batch_size, take_at)
        if jobs:
            return jobs
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        w.take_waiter = fut
        w.take_batch = batch_size
        w.take_at = take_at
        self._take_waiters.append(w)
        try:
            await asyncio.wait({fut}, timeout=self.opts.take_timeout)
        except asyncio.CancelledError:
            # The worker hung up. Anything already handed to it goes back to the queue.
            if fut.done() and not fut.cancelled():
                for job in fut.result():
                    self._return_to_queue(job, w)
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
        self._refresh_state(w)
        if self.crash.reset():
            log.info("worker %s is taking jobs: crash loop over", w.id)

    def _pop_jobs(self, w: wk.Worker, n: int, take_at: float) -> list[Job]:
        jobs = []
        while self.queue and len(jobs) < n:
            job = self.jobs.get(self.queue.popleft())
            if job is None or job.status != IN_QUEUE:
                continue
            self._assign(job, w, take_at)
            jobs.append(job)
        return jobs

    def _dispatch(self) -> None:
        """Hand queued jobs to workers already waiting in a job-take long-poll."""
        while self.queue and self._take_waiters:
            w = self._take_waiters.popleft()
            fut = w.take_waiter
            if fut is None or fut.done() or w.stopping or not w.alive:
                continue
            jobs = self._pop_jobs(w, w.take_batch, w.take_at)
            if jobs:
                w.take_waiter = None
                fut.set_result(jobs)
            else:
                self._take_waiters.appendleft(w)
                break

    def _assign(self, job: Job, w: wk.Worker, take_at: float) -> None:
        self._set_status(job, IN_PROGRESS)
        job.worker_id = w.id
        job.started_at = time.time()
        job.attempt += 1
        if take_at:
            job.timings["take"] = take_at
        w.current_jobs.add(job.id)
        self._refresh_state(w)
        self.store.update_job(job.id, status=IN_PROGRESS, worker_id=w.id, started_at=job.started_at)
        timeout = dl.execution_timeout_s(job.policy, self.opts.execution_timeout)
        self._push(time.monotonic() + timeout, dl.EXEC, job.id, job.attempt)

    def _return_to_queue(self, job: Job, w: wk.Worker) -> None:
        w.current_jobs.discard(job.id)
        if job.status == IN_PROGRESS and job.worker_id == w.id:
            self._set_status(job, IN_QUEUE)
            job.worker_id = None
            job.started_at = None
            job.attempt += 1
            self.store.update_job(job.id, status=IN_QUEUE, worker_id=None, started_at=None)
            self.queue.appendleft(job.id)
        self._refresh_state(w)
        self._dispatch()

    def stop_signals(self, w: wk.Worker) -> list[str]:
        ids, w.pending_stops = w.pending_stops, []
        # The SDK ignores a stop for a job it took but has not started yet ("No in-progress
        # job"), so each stop is sent again for a few seconds; a repeat is harmless.
        now = time.monotonic()
        for job_id in ids:
            w.resend_stops.setdefault(job_id, now + STOP_RESEND_S)
        for job_id, until in list(w.resend_stops.items()):
            if until <= now:
                del w.resend_stops[job_id]
            elif job_id not in ids:
                ids.append(job_id)
        return ids

    async def wait_stop_signals(self, w: wk.Worker) -> list[str]:
        if w.stopping or self._closing:
            # An empty answer makes the SDK sleep 1 s before it sees it is shutting down;
            # a non-empty one (an id that names no job, so nothing is cancelled) does not.
            return self.stop_signals(w) or [f"{w.id}-shutdown"]
        if w.pending_stops:
            return self.stop_signals(w)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        w.stop_waiter = fut
        timeout = STOP_RESEND_INTERVAL_S if w.resend_stops else self.opts.take_timeout
        try:
            await asyncio.wait({fut}, timeout=timeout)
        finally:
            if w.stop_waiter is fut:
                w.stop_waiter = None
        if w.stopping or self._closing:
            return self.stop_signals(w) or [f"{w.id}-shutdown"]
        return self.stop_signals(w)

    def job_done(self, w: wk.Worker, job_id: str, body: Any) -> None:
        """A POST to job-done: a progress update, or the job's final result."""
        if w.stopped_jobs.pop(job_id, None) is not None:
            self._refresh_state(w)
            self.poke()
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
            self._finish(job, FAILED, output=body.get("output"), error=error)
        elif error is not None:
            # RunPod only understands a string error: anything else ends the job COMPLETED
            # with no output (runpod-python#299). Say so here, where an operator looks.
            log.warning(
                "job %s: the handler returned a non-string 'error' (%s); RunPod marks such "
                "a job COMPLETED without output, so does this endpoint. Return a string.",
                job.id,
                type(error).__name__,
            )
            self._finish(job, COMPLETED)
        else:
            self._finish(job, COMPLETED, output=body.get("output"))
        if body.get("stopPod"):
            self.fleet.stop(w, "the handler asked for a fresh worker (refresh_worker)")
        self.poke()

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
            self._refresh_state(w)
            self.poke()

    def _refresh_state(self, w: wk.Worker) -> None:
        """initializing until its first take; then running while it holds or still runs
        jobs (those it was told to stop included), else idle."""
        if not w.alive or w.stopping or not w.took_any:
            return
        if w.current_jobs or w.stopped_jobs:
            w.state = scaling.RUNNING
            w.idle_since = None
        elif w.state != scaling.IDLE:
            w.state = scaling.IDLE
            w.idle_since = time.monotonic()

    # ---- state changes -------------------------------------------------------------

    def _count(self, job: Job, delta: int) -> None:
        self.counts[job.status] += delta
        if job.status == IN_QUEUE and job.low_priority:
            self.low_priority_queued += delta

    def _set_status(self, job: Job, status: str) -> None:
        if status not in TRANSITIONS[job.status]:
            raise ValueError(f"job {job.id}: {job.status} -> {status} is not allowed")
        self._count(job, -1)
        job.status = status
        self._count(job, +1)

    def _finish(
        self, job: Job, status: str, *, output: Any = None, error: str | None = None
    ) -> None:
        w = self.workers.get(job.worker_id or "")
        if w is not None:
            w.current_jobs.discard(job.id)
            self._refresh_state(w)
        self._set_status(job, status)
        job.output = output
        job.error = error
        job.finished_at = time.time()
        job.timings["finished"] = time.perf_counter()
        self.store.update_job(
            job.id, status=status, output=output, error=error, finished_at=job.finished_at
        )
        if job.done is not None:
            job.done.set()
        if job.webhook:
            payload = webhooks.body(job.payload(), job.input, job.webhook)
            self._spawn_task(self._send_webhook(job.webhook, payload))
        self._schedule_retention(job, job.finished_at)

    def _requeue_or_fail(self, job: Job, reason: str) -> None:
        if job.requeues < 1:
            self._set_status(job, IN_QUEUE)
            job.requeues += 1
            job.worker_id = None
            job.started_at = None
            job.attempt += 1
            self.store.update_job(
                job.id, status=IN_QUEUE, requeues=job.requeues, worker_id=None, started_at=None
            )
            self.queue.appendleft(job.id)
            log.warning("job %s requeued once: %s", job.id, reason)
        else:
            self._finish(job, FAILED, error=f"{reason}; the job was already requeued once")

    def _signal_stop(self, job: Job, why: str) -> None:
        """Tell the job's worker to stop it; the worker counts as busy until it has."""
        w = self.workers.get(job.worker_id or "")
        if w is None or not w.alive:
            return
        w.current_jobs.discard(job.id)
        w.stopped_jobs[job.id] = time.monotonic()
        w.pending_stops.append(job.id)
        if w.stop_waiter is not None and not w.stop_waiter.done():
            w.stop_waiter.set_result(None)
        self._refresh_state(w)
        log.info("asking worker %s to stop job %s (%s)", w.id, job.id, why)

    async def _send_webhook(self, url: str, payload: dict[str, Any]) -> None:
        assert self._http is not None
        await webhooks.send(self._http, url, payload, self.opts.webhook_retry_delay)

    # ---- deadlines -----------------------------------------------------------------

    def _push(self, when: float, kind: str, job_id: str, token: int) -> None:
        self.deadlines.push(when, kind, job_id, token)
        self.poke()

    def _schedule_ttl(self, job: Job, now_wall: float) -> None:
        ttl = dl.ttl_s(job.policy)
        if ttl:
            remaining = job.created_at + ttl - now_wall
            self._push(time.monotonic() + remaining, dl.TTL, job.id, 0)

    def _schedule_retention(self, job: Job, now_wall: float) -> None:
        assert job.finished_at is not None
        # RunPod keeps /runsync results 1 minute, /run results 30 minutes.
        keep = self.opts.runsync_retention if job.sync else self.opts.retention
        remaining = job.finished_at + keep - now_wall
        self._push(time.monotonic() + remaining, dl.RETENTION, job.id, job.retried)

    def _apply_deadline(self, due: dl.Due) -> None:
        job = self.jobs.get(due.job_id)
        if due.kind == dl.EXEC:
            self._execution_timeout(job, due)
        elif job is None:
            return
        elif due.kind == dl.TTL and not job.terminal:
            # RunPod: the ttl covers queue and run time; past it the job is deleted (404).
            if job.status == IN_PROGRESS:
                self._signal_stop(job, "ttl expired")
            self._forget(job)
        elif due.kind == dl.RETENTION and job.terminal and job.retried == due.token:
            self._forget(job)

    def _execution_timeout(self, job: Job | None, due: dl.Due) -> None:
        """RunPod fails a job that runs past its execution timeout and stops the worker."""
        if job is not None and job.status == IN_PROGRESS and job.attempt == due.token:
            w = self.workers.get(job.worker_id or "")
            seconds = dl.execution_timeout_s(job.policy, self.opts.execution_timeout)
            self._finish(
                job, TIMED_OUT, error=f"execution timeout: the job ran longer than {seconds:g}s"
            )
            if w is not None:
                self.fleet.stop(w, f"job {job.id} ran past its execution timeout")
            return
        # A job that was cancelled or expired still counts against its execution timeout:
        # a worker still running it then is stopped, so it cannot stay busy for ever.
        for w in self.workers.values():
            if due.job_id in w.stopped_jobs and w.alive:
                self.fleet.stop(
                    w, f"still running stopped job {due.job_id} past its execution timeout"
                )

    def _forget(self, job: Job) -> None:
        self.jobs.pop(job.id, None)
        self._count(job, -1)
        self.store.delete_jobs([job.id])
        if job.done is not None:
            job.done.set()

    async def _timer_loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                delay = self._tick()
            except Exception:  # noqa: BLE001 - the timer must survive one bad tick
                log.exception("timer tick failed")
                delay = 1.0
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _tick(self) -> float | None:
        now = time.monotonic()
        for due in self.deadlines.pop_due(now):
            self._apply_deadline(due)
        next_at = [t for t in (self.deadlines.next_at(),) if t is not None]
        next_at += self._scale(now)
        return max(0.0, min(next_at) - time.monotonic()) if next_at else None

    # ---- scaling -------------------------------------------------------------------

    def observe(self, now: float) -> scaling.Observed:
        """What the scaler needs to know, as plain values."""
        live = self.fleet.serving()
        oldest = self._oldest_scaling_job()
        return scaling.Observed(
            now=now,
            workers=tuple(scaling.WorkerView(w.id, w.state, w.idle_since) for w in live),
            queued=self.counts[IN_QUEUE] - self.low_priority_queued,
            queued_any=self.counts[IN_QUEUE],
            in_progress=self.counts[IN_PROGRESS],
            oldest_queued_at=oldest,
            last_start_at=self.fleet.last_start_at,
            spawn_blocked_until=self.crash.next_spawn_at,
        )

    def _policy(self) -> scaling.Policy:
        o = self.opts
        return scaling.Policy(
            o.scaler, o.scaler_value, o.workers_min, o.workers_max, o.idle_timeout
        )

    def _scale(self, now: float) -> list[float]:
        """Apply the scaling plan; returns the times at which to look again."""
        if self._closing:
            return []
        plan = scaling.plan(self.observe(now), self._policy())
        self.fleet.start(plan.start)
        for worker_id in plan.stop:
            self.fleet.stop(self.workers[worker_id], f"idle for {self.opts.idle_timeout:g}s")
        return [*plan.wake_at, *self.fleet.kill_overdue(now)]

    def _oldest_scaling_job(self) -> float | None:
        """Enqueue time of the oldest queued job that may trigger scaling."""
        while self.queue and not self._queued(self.queue[0]):
            self.queue.popleft()
        if self.counts[IN_QUEUE] <= self.low_priority_queued:
            return None
        for job_id in self.queue:
            job = self.jobs.get(job_id)
            if job is not None and job.status == IN_QUEUE and not job.low_priority:
                return job.enqueued_mono
        return None

    def _worker_exited(self, w: wk.Worker, code: int) -> None:
        """The fleet saw a worker exit: requeue what it held, count a start-up crash."""
        meaning = exit_meaning(code)
        for job_id in sorted(w.current_jobs):
            job = self.jobs.get(job_id)
            if job is not None and job.status == IN_PROGRESS and job.worker_id == w.id:
                self._requeue_or_fail(
                    job, f"worker {w.id} exited with code {code} ({meaning}) while running the job"
                )
        w.current_jobs.clear()
        w.stopped_jobs.clear()
        if w.stopping:
            w.state = "exited"
        else:
            w.crashed = code != 0 or not w.took_any
            w.state = "unhealthy" if w.crashed else "exited"
            if w.crashed:
                w.last_error = w.last_error or f"exit code {code}: {meaning}"
                log.warning("worker %s exited with code %s (%s)", w.id, code, meaning)
            if not w.took_any:
                self._count_crash(w, code, meaning)
        self._dispatch()
        self.poke()

    def _count_crash(self, w: wk.Worker, code: int, meaning: str) -> None:
        error = f"exit code {code}: {meaning}"
        if w.last_error and w.last_error != error:
            error += f" ({w.last_error})"
        active = self.crash.record(error, wk.tail(w.log_path, 20), time.monotonic())
        if active and self.opts.fail_fast_crash_loop:
            self._fail_queued_for_crash_loop()

    def _fail_queued_for_crash_loop(self) -> None:
        reason = self.crash.reason()
        for job_id in list(self.queue):
            job = self.jobs.get(job_id)
            if job is not None and job.status == IN_QUEUE:
                self._finish(job, FAILED, error=reason)
        self.queue.clear()
