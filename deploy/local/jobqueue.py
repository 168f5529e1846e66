"""One endpoint's jobs: the queue, each job's state, and every change to them.

Plain data and functions, like ``scaling``: no asyncio, no processes, no clock of its
own (callers pass ``now``), so every rule is testable with plain values. A job's status
changes only in ``_move`` (which checks ``TRANSITIONS``); a job enters the queue only in
``_enqueue``; the counts ``/health`` shows are derived from the jobs, never kept in step.
Each change is written through to the store at once (``kill -9`` loses nothing
acknowledged). What a change means outside (a done event, a webhook, a worker told to
stop) is the asyncio shell's business (``endpoint``).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from deploy.local.jobs import TRANSITIONS, Job
from deploy.runpod.vocabulary import FAILED, IN_PROGRESS, IN_QUEUE, TIMED_OUT

REQUEUES_ALLOWED = 1


class JobStore(Protocol):
    def save_job(self, rec: dict[str, Any]) -> None: ...
    def update_job(self, job_id: str, **fields: Any) -> None: ...
    def delete_jobs(self, ids: list[str]) -> None: ...


@dataclass(frozen=True)
class QueueView:
    """What the scaler needs of the queue."""

    queued: int  # jobs that may start a worker (policy.lowPriority ones may not)
    queued_any: int
    in_progress: int
    oldest_queued_at: float | None  # monotonic enqueue time of the oldest counted job


class JobQueue:
    """The jobs of one endpoint and the order queued ones are handed out."""

    def __init__(self, store: JobStore, endpoint_id: str = "") -> None:
        self.store = store
        self.endpoint_id = endpoint_id
        self.jobs: dict[str, Job] = {}
        # Ids of exactly the IN_QUEUE jobs, in hand-out order.
        self.queue: deque[str] = deque()
        self.retried_total = 0

    # ---- reading -----------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def counts(self) -> Counter[str]:
        return Counter(job.status for job in self.jobs.values())

    def view(self) -> QueueView:
        queued = [self.jobs[i] for i in self.queue]
        counted = [j for j in queued if not j.low_priority]
        return QueueView(
            queued=len(counted),
            queued_any=len(queued),
            in_progress=sum(1 for j in self.jobs.values() if j.status == IN_PROGRESS),
            oldest_queued_at=counted[0].enqueued_mono if counted else None,
        )

    def held_by(self, worker_id: str) -> list[Job]:
        return [
            j for j in self.jobs.values() if j.status == IN_PROGRESS and j.worker_id == worker_id
        ]

    # ---- changes -----------------------------------------------------------------------

    def add(self, job: Job) -> None:
        """A new job (IN_QUEUE) or one loaded from the store (any status)."""
        self.jobs[job.id] = job
        if job.status == IN_QUEUE:
            job.enqueued_mono = time.monotonic()
            self.queue.append(job.id)

    def take(self, worker_id: str, n: int, now: float) -> list[Job]:
        """Hand up to ``n`` queued jobs, oldest first, to ``worker_id``."""
        taken = []
        while self.queue and len(taken) < n:
            job = self.jobs[self.queue.popleft()]
            self._move(job, IN_PROGRESS)
            job.worker_id = worker_id
            job.started_at = now
            job.attempt += 1
            self.store.update_job(job.id, status=IN_PROGRESS, worker_id=worker_id, started_at=now)
            taken.append(job)
        return taken

    def put_back(self, job: Job, *, count_requeue: bool) -> None:
        """A job a worker held goes back to the front of the queue (its worker hung up,
        exited, or the endpoint restarted); ``count_requeue`` spends its one requeue."""
        if count_requeue:
            job.requeues += 1
        job.attempt += 1
        self._enqueue(job, front=True)

    def may_requeue(self, job: Job) -> bool:
        """RunPod requeues a job whose worker died once; the second time it fails."""
        return job.requeues < REQUEUES_ALLOWED

    def retry(self, job: Job) -> bool:
        """A FAILED or TIMED_OUT job queues again (same id, old result removed)."""
        if job.status not in (FAILED, TIMED_OUT):
            return False
        job.output = job.error = None
        job.finished_at = None
        job.progress = None
        job.stream = []
        job.stream_pos = 0
        job.timings = {}
        job.retried += 1
        self.retried_total += 1
        self._enqueue(job, front=False)
        return True

    def finish(
        self, job: Job, status: str, now: float, *, output: Any = None, error: str | None = None
    ) -> None:
        if job.status == IN_QUEUE:
            self.queue.remove(job.id)
        self._move(job, status)
        job.output = output
        job.error = error
        job.finished_at = now
        self.store.update_job(job.id, status=status, output=output, error=error, finished_at=now)

    def remove(self, job: Job) -> None:
        """Forget a job (ttl, retention, purge): its id answers 404 from now on."""
        if self.jobs.pop(job.id, None) is None:
            return
        if job.status == IN_QUEUE:
            self.queue.remove(job.id)
        self.store.delete_jobs([job.id])

    def purge(self) -> list[Job]:
        """Remove every queued job; running ones are not touched (as on RunPod)."""
        removed = [self.jobs.pop(i) for i in self.queue]
        self.queue.clear()
        self.store.delete_jobs([j.id for j in removed])
        return removed

    # ---- the one place for each rule ---------------------------------------------------

    def _enqueue(self, job: Job, *, front: bool) -> None:
        self._move(job, IN_QUEUE)
        job.worker_id = None
        job.started_at = None
        job.enqueued_mono = time.monotonic()
        (self.queue.appendleft if front else self.queue.append)(job.id)
        # Not save_job: that would write a 20 MB input again for a status change.
        self.store.update_job(
            job.id,
            status=IN_QUEUE,
            worker_id=None,
            started_at=None,
            finished_at=job.finished_at,
            output=job.output,
            error=job.error,
            requeues=job.requeues,
            retried=job.retried,
        )

    def _move(self, job: Job, status: str) -> None:
        if status not in TRANSITIONS[job.status]:
            raise ValueError(f"job {job.id}: {job.status} -> {status} is not allowed")
        job.status = status


def load(queue: JobQueue, records: Iterable[dict[str, Any]]) -> list[Job]:
    """Jobs from the store; returns those a worker was running when the endpoint stopped."""
    orphans = []
    for rec in records:
        job = Job(rec)
        queue.add(job)
        if job.status == IN_PROGRESS:
            orphans.append(job)
    return orphans
