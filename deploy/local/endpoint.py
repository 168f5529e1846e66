"""One endpoint of the local endpoint process: the asyncio shell around its pure parts.

The jobs and their queue are ``jobqueue``'s, the scaling decision ``scaling``'s, the
deadlines ``deadlines``', the worker processes the ``fleet``'s. This shell wires them to
the event loop: handlers change state and poke one timer task, which applies due
deadlines and the scaling plan; nothing polls at a fixed rate. Each endpoint has its own
queue, workers, policy and timer, so a job on one never waits behind another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from deploy.local import deadlines as dl
from deploy.local import life, scaling, webhooks
from deploy.local import workers as wk
from deploy.local.crashloop import CrashLoop
from deploy.local.fleet import Fleet
from deploy.local.jobqueue import JobQueue, load
from deploy.local.jobs import Job
from deploy.local.options import EndpointOptions
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

if TYPE_CHECKING:
    from deploy.local.host import Host

__all__ = ["QUEUE_DELAY", "REQUEST_COUNT", "Endpoint"]

log = logging.getLogger("deploy.local")

STOP_RESEND_INTERVAL_S = 0.5


class Endpoint:
    """State of one endpoint. ``await start()``, ``await shutdown()``."""

    def __init__(self, opts: EndpointOptions, host: Host) -> None:
        self.opts = opts
        self.id = opts.endpoint_id
        self.host = host
        self.jobs = JobQueue(host.store, self.id)
        self.requests: Counter[str] = Counter()
        self.worker_requests: Counter[str] = Counter()
        self.crash = CrashLoop(threshold=opts.crash_loop_threshold)
        self.deadlines = dl.Deadlines()
        self._take_waiters: list[wk.Worker] = []
        self._wake: asyncio.Event | None = None
        self._timer: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self.fleet = Fleet(
            endpoint_id=self.id,
            command=opts.command(),
            env=lambda w: wk.worker_env(w, host.base_url, self.id, opts.worker_env),
            gpus=host.gpus,
            stop_grace=opts.stop_grace,
            workers_max=opts.workers_max,
            log_dir=host.log_dir,
            store=host.store,
            on_exit=self._worker_exited,
            spawn_task=self._spawn_task,
            poke=self.poke,
        )
        self.workers = self.fleet.workers

    @property
    def log_dir(self):
        return self.host.log_dir

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self, *, adopt_unnamed: bool) -> None:
        self._wake = asyncio.Event()
        now = time.time()
        records = self.host.store.load_jobs(self.id, unnamed=adopt_unnamed)
        for job in load(self.jobs, records):
            self._requeue_or_fail(
                job, f"the endpoint restarted while worker {job.worker_id} ran the job"
            )
        for job in self.jobs.jobs.values():
            if job.terminal:
                self._schedule_retention(job, now)
            else:
                self._schedule_ttl(job, now)
        self._timer = asyncio.create_task(self._timer_loop())
        self.poke()

    async def shutdown(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after the grace)."""
        self._closing = True
        await self.fleet.stop_all("endpoint shutting down")
        if self._timer:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()

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
        job = Job(
            {
                "id": f"sync-{uuid.uuid4()}" if sync else str(uuid.uuid4()),
                "endpoint": self.id,
                "seq": self.host.next_seq(),
                "status": IN_QUEUE,
                "input": payload["input"],
                "webhook": payload.get("webhook"),
                "policy": payload.get("policy") or {},
                "s3_config": payload.get("s3Config"),
                "created_at": now,
            }
        )
        job.timings["received"] = received
        self.host.store.save_job(job.record())
        self.jobs.add(job)
        self._schedule_ttl(job, now)
        job.timings["enqueued"] = time.perf_counter()
        self._queued_changed()
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
        if not self.jobs.retry(job):
            return False
        self._queued_changed()
        return True

    def purge_queue(self) -> int:
        removed = self.jobs.purge()
        for job in removed:
            _wake_waiters(job)
        self.poke()
        return len(removed)

    async def wait_done(self, job: Job, timeout: float) -> None:
        if job.terminal:
            return
        if job.done is None:
            job.done = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(job.done.wait(), timeout)

    def health(self) -> dict[str, Any]:
        counts = self.jobs.counts()
        summary = self.fleet.summary()
        return {
            "jobs": {
                "completed": counts[COMPLETED],
                "failed": counts[FAILED] + counts[TIMED_OUT],
                "inProgress": counts[IN_PROGRESS],
                "inQueue": counts[IN_QUEUE],
                "retried": self.jobs.retried_total,
            },
            "workers": {
                "idle": summary["idle"],
                "initializing": summary["initializing"],
                "ready": summary["idle"],
                "running": summary["running"],
                "throttled": summary["throttled"],
                "unhealthy": summary["unhealthy"],
            },
            "local": {"cancelled": counts[CANCELLED], "timedOut": counts[TIMED_OUT]},
        }

    def describe_workers(self) -> dict[str, Any]:
        o = self.opts
        return {
            "workers": self.fleet.describe(),
            "summary": self.fleet.summary(),
            "crashLoop": self.crash.describe(),
            # The scaling policy in RunPod's REST v2 endpoint shape, for the console.
            "endpoint": {
                "workers": {
                    "min": o.workers_min,
                    "max": o.workers_max,
                    "idleTimeout": o.idle_timeout,
                },
                "scaling": {
                    "type": o.scaler,
                    ("queueDelay" if o.scaler == "QUEUE_DELAY" else "requestCount"): (
                        o.scaler_value
                    ),
                },
                "gpu": {"pools": list(self.host.gpus.gpus), "count": 1}
                if self.host.gpus.gpus
                else None,
                "timeout": int(o.execution_timeout * 1000),
            },
        }

    def bill(self, since: float) -> dict[str, Any]:
        """Each worker's billed life since ``since`` and the seconds attributed to jobs."""
        return life.bill(self.host.store.load_lives(self.id, since), time.time())

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "workerRequests": dict(self.worker_requests),
            "jobs": {k: v for k, v in self.jobs.counts().items() if v},
            "workers": {"started": self.fleet.started, "peak": self.fleet.peak},
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
            w.settle(time.monotonic())
            self.poke()
        if w.stopping or self._closing:
            return []
        jobs = self._hand(w, batch_size, take_at)
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
                    self._put_back(job, w)
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
        if self.crash.reset():
            log.info("worker %s is taking jobs: crash loop over", w.id)

    def _hand(self, w: wk.Worker, n: int, take_at: float) -> list[Job]:
        now = time.time()
        jobs = self.jobs.take(w.id, n, now)
        for job in jobs:
            if take_at:
                job.timings["take"] = take_at
            w.current_jobs.add(job.id)
            w.life.job_started(job.id, now)
            timeout = dl.execution_timeout_s(job.policy, self.opts.execution_timeout)
            self._push(time.monotonic() + timeout, dl.EXEC, job.id, job.attempt)
        if jobs:
            w.settle(time.monotonic())
            self.fleet.save_life(w)
        return jobs

    def _queued_changed(self) -> None:
        """Jobs joined the queue: hand them to workers waiting in a job-take long-poll."""
        while self.jobs.queue and self._take_waiters:
            w = self._take_waiters.pop(0)
            fut = w.take_waiter
            if fut is None or fut.done() or w.stopping or not w.alive:
                continue
            w.take_waiter = None
            fut.set_result(self._hand(w, w.take_batch, w.take_at))
        self.poke()

    def _put_back(self, job: Job, w: wk.Worker) -> None:
        """A worker hung up on a job it was handed: it goes back first in the queue."""
        self._release(job, w)
        if job.status == IN_PROGRESS and job.worker_id == w.id:
            self.jobs.put_back(job, count_requeue=False)
        self._queued_changed()

    def _release(self, job: Job, w: wk.Worker | None) -> None:
        if w is not None and job.id in w.current_jobs:
            w.current_jobs.discard(job.id)
            w.life.job_ended(job.id, time.time())
            self.fleet.save_life(w)
            w.settle(time.monotonic())

    async def wait_stop_signals(self, w: wk.Worker) -> list[str]:
        if w.stopping or self._closing:
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
        if w.stopping or self._closing:
            return w.drain_stops(time.monotonic()) or [f"{w.id}-shutdown"]
        return w.drain_stops(time.monotonic())

    def job_done(self, w: wk.Worker, job_id: str, body: Any) -> None:
        """A POST to job-done: a progress update, or the job's final result."""
        if w.stopped_jobs.pop(job_id, None) is not None:
            w.settle(time.monotonic())
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
            w.settle(time.monotonic())
            self.poke()

    # ---- state changes -------------------------------------------------------------

    def _finish(
        self, job: Job, status: str, *, output: Any = None, error: str | None = None
    ) -> None:
        self._release(job, self.workers.get(job.worker_id or ""))
        self.jobs.finish(job, status, time.time(), output=output, error=error)
        job.timings["finished"] = time.perf_counter()
        _wake_waiters(job)
        if job.webhook:
            payload = webhooks.body(job.payload(), job.input, job.webhook)
            self._spawn_task(self._send_webhook(job.webhook, payload))
        self._schedule_retention(job, job.finished_at or time.time())

    def _requeue_or_fail(self, job: Job, reason: str) -> None:
        if not self.jobs.may_requeue(job):
            self._finish(job, FAILED, error=f"{reason}; the job was already requeued once")
            return
        self._release(job, self.workers.get(job.worker_id or ""))
        self.jobs.put_back(job, count_requeue=True)
        log.warning("job %s requeued once: %s", job.id, reason)

    def _signal_stop(self, job: Job, why: str) -> None:
        """Tell the job's worker to stop it; the worker counts as busy until it has."""
        w = self.workers.get(job.worker_id or "")
        if w is None or not w.alive:
            return
        self._release(job, w)
        w.stopped_jobs[job.id] = time.monotonic()
        w.pending_stops.append(job.id)
        if w.stop_waiter is not None and not w.stop_waiter.done():
            w.stop_waiter.set_result(None)
        w.settle(time.monotonic())
        log.info("asking worker %s to stop job %s (%s)", w.id, job.id, why)

    async def _send_webhook(self, url: str, payload: dict[str, Any]) -> None:
        await webhooks.send(self.host.http(), url, payload, self.opts.webhook_retry_delay)

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
        self.jobs.remove(job)
        _wake_waiters(job)

    async def _timer_loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                delay = self._tick()
            except Exception:  # noqa: BLE001 - the timer must survive one bad tick
                log.exception("endpoint %s: timer tick failed", self.id)
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
            spawn_blocked_until=self.crash.next_spawn_at,
        )

    def policy(self) -> scaling.Policy:
        o = self.opts
        return scaling.Policy(
            o.scaler, o.scaler_value, o.workers_min, o.workers_max, o.idle_timeout
        )

    def _scale(self, now: float) -> list[float]:
        """Apply the scaling plan; returns the times at which to look again."""
        if self._closing:
            return []
        plan = scaling.plan(self.observe(now), self.policy())
        self.fleet.start(plan.start)
        for worker_id in plan.stop:
            self.fleet.stop(self.workers[worker_id], f"idle for {self.opts.idle_timeout:g}s")
        return [*plan.wake_at, *self.fleet.kill_overdue(now)]

    def _worker_exited(self, w: wk.Worker, code: int) -> None:
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
            self._requeue_or_fail(job, f"worker {w.id} {how} while running the job")
        if w.exited(code):
            w.last_error = (
                self.fleet.port_collision(w) or w.last_error or f"exit code {code}: {meaning}"
            )
            log.warning("worker %s exited with code %s (%s)", w.id, code, meaning)
        if not w.stopping and not w.took_any:
            self._count_crash(w, code, meaning)
        self._queued_changed()

    def _count_crash(self, w: wk.Worker, code: int, meaning: str) -> None:
        error = f"exit code {code}: {meaning}"
        if w.last_error and w.last_error != error:
            error += f" ({w.last_error})"
        active = self.crash.record(error, wk.tail(w.log_path, 20), time.monotonic())
        if active and self.opts.fail_fast_crash_loop:
            reason = self.crash.reason()
            for job_id in list(self.jobs.queue):
                self._finish(self.jobs.jobs[job_id], FAILED, error=reason)


def _wake_waiters(job: Job) -> None:
    """A /runsync waiting on the job answers now (it ended or is gone)."""
    if job.done is not None:
        job.done.set()
