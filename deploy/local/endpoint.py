"""One endpoint of the local endpoint process: the asyncio shell around its parts.

The jobs and their queue are ``jobqueue``'s, the scaling decision ``scaling``'s, the
worker processes the ``fleet``'s; ``dispatch`` keeps jobs and workers in step and pushes
deadlines, ``protocol`` answers the workers, ``timer`` applies due deadlines and the
scaling plan. This shell composes them and answers the job API. Each endpoint has its own
queue, workers, policy and timer, so a job on one never waits behind another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from deploy.local import life, webhooks
from deploy.local import workers as wk
from deploy.local.crashloop import CrashLoop
from deploy.local.dispatch import Dispatch, wake_waiters
from deploy.local.fleet import Fleet
from deploy.local.jobqueue import JobQueue, load
from deploy.local.jobs import Job
from deploy.local.options import EndpointOptions
from deploy.local.protocol import WorkerProtocol
from deploy.local.timer import Timer
from deploy.runpod.vocabulary import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    IN_QUEUE,
    QUEUE_DELAY,
    REQUEST_COUNT,
    TIMED_OUT,
)

if TYPE_CHECKING:
    from deploy.local.host import Host

__all__ = ["QUEUE_DELAY", "REQUEST_COUNT", "Endpoint"]


class Endpoint:
    """State of one endpoint. ``await start()``, ``await shutdown()``; the workers' side
    of the protocol is ``protocol``."""

    def __init__(self, opts: EndpointOptions, host: Host) -> None:
        self.opts = opts
        self.id = opts.endpoint_id
        self.host = host
        self.jobs = JobQueue(host.store, self.id)
        self.requests: Counter[str] = Counter()
        self.worker_requests: Counter[str] = Counter()
        self.crash = CrashLoop(threshold=opts.crash_loop_threshold)
        self._tasks: set[asyncio.Task] = set()
        self.fleet = Fleet(
            endpoint_id=self.id,
            command=opts.command(),
            env=lambda w: wk.worker_env(w, host.base_url, self.id, opts.worker_env),
            gpus=host.gpus,
            stop_grace=opts.stop_grace,
            workers_max=opts.workers_max,
            log_dir=host.log_dir,
            store=host.store,
            on_exit=lambda w, code: self.dispatch.worker_exited(w, code),
            spawn_task=self._spawn_task,
            poke=self.poke,
        )
        self.workers = self.fleet.workers
        self.dispatch = Dispatch(
            opts=opts,
            jobs=self.jobs,
            fleet=self.fleet,
            crash=self.crash,
            on_finished=self._finished,
            poke=self.poke,
        )
        self.protocol = WorkerProtocol(self.dispatch)
        self.timer = Timer(self.dispatch, self.id)

    @property
    def log_dir(self):
        return self.host.log_dir

    async def start(self, *, adopt_unnamed: bool) -> None:
        now = time.time()
        records = self.host.store.load_jobs(self.id, unnamed=adopt_unnamed)
        for job in load(self.jobs, records):
            self.dispatch.requeue_or_fail(
                job, f"the endpoint restarted while worker {job.worker_id} ran the job"
            )
        for job in self.jobs.jobs.values():
            if job.terminal:
                self.dispatch.schedule_retention(job, now)
            else:
                self.dispatch.schedule_ttl(job, now)
        self.timer.start()

    async def shutdown(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after the grace)."""
        self.dispatch.closing = True
        await self.fleet.stop_all("endpoint shutting down")
        self.timer.cancel()
        for task in list(self._tasks):
            task.cancel()

    def _spawn_task(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def poke(self) -> None:
        """Ask the timer task to re-evaluate deadlines and scaling soon."""
        self.timer.poke()

    def _finished(self, job: Job) -> None:
        """A job ended: a /runsync waiting on it answers, its webhook is sent."""
        wake_waiters(job)
        if job.webhook:
            payload = webhooks.body(job.payload(), job.input, job.webhook)
            self._spawn_task(self._send_webhook(job.webhook, payload))

    async def _send_webhook(self, url: str, payload: dict[str, Any]) -> None:
        await webhooks.send(self.host.http(), url, payload, self.opts.webhook_retry_delay)

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
        self.dispatch.schedule_ttl(job, now)
        job.timings["enqueued"] = time.perf_counter()
        self.dispatch.queued_changed()
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def cancel(self, job: Job) -> None:
        if job.terminal:
            return
        if job.status == IN_PROGRESS:
            self.dispatch.signal_stop(job, "cancelled")
        self.dispatch.finish(job, CANCELLED)

    def retry(self, job: Job) -> bool:
        if not self.jobs.retry(job):
            return False
        self.dispatch.queued_changed()
        return True

    def purge_queue(self) -> int:
        removed = self.jobs.purge()
        for job in removed:
            wake_waiters(job)
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
