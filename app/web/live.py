"""What a waiting or running job's page says beyond its own row: its place in the queue,
whether a GPU worker is starting, and an estimate from recent runs of the same pipeline.

Everything comes from the database (the job rows and the endpoint snapshot reconcile
writes), never from RunPod, so pages can ask for it every second.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

# The one reading of "workers by state" from /health and /workers (diagnosis owns it).
from app.endpoints.diagnosis import worker_summary
from app.endpoints.health import load_snapshot
from app.models import Job, Status, utcnow
from app.services import services

RECENT_RUNS = 20  # how many completed jobs of a pipeline the estimate looks at
QUEUED = (Status.SUBMITTING, Status.IN_QUEUE)


@dataclass(frozen=True)
class Live:
    """The queue around one job. ``idle_workers`` is None without an endpoint snapshot."""

    ahead: int  # this endpoint's jobs queued before this one
    running: int  # jobs a worker is running now
    idle_workers: int | None
    starting_workers: int
    typical_s: float | None  # median execution time of recent runs of this pipeline
    elapsed_s: float | None  # how long this job has been running
    # How long a PENDING job has waited for a Celery task worker, once past the grace.
    unpicked_s: float | None = None

    @property
    def eta_s(self) -> float | None:
        """Seconds until the job is done, roughly; None without recent runs to go by."""
        if self.typical_s is None:
            return None
        if self.elapsed_s is not None:
            return max(self.typical_s - self.elapsed_s, 0.0)
        workers = max((self.idle_workers or 0) + self.running, 1)
        return self.typical_s * (self.ahead // workers + 1)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=utcnow().tzinfo)  # SQLite hands back naive UTC
    return moment


def typical_run_s(session: Session, pipeline: str) -> float | None:
    """Median execution time of the pipeline's last ``RECENT_RUNS`` completed jobs."""
    rows = session.scalars(
        select(Job.execution_ms)
        .where(
            Job.pipeline == pipeline,
            Job.status == Status.COMPLETED,
            Job.execution_ms.is_not(None),
        )
        .order_by(Job.finished_at.desc())
        .limit(RECENT_RUNS)
    ).all()
    return statistics.median(rows) / 1000 if rows else None


def live(session: Session, job: Job) -> Live | None:
    """The queue around ``job``; None once it has ended."""
    if job.terminal:
        return None
    since = func.coalesce(Job.submitted_at, Job.created_at)
    mine = _aware(job.submitted_at or job.created_at)
    ahead = 0
    if job.status in QUEUED or job.status == Status.PENDING:
        ahead = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.status.in_([s.value for s in QUEUED]),
                Job.endpoint == job.endpoint,  # each endpoint has its own queue
                Job.id != job.id,
                since < mine,
            )
        )
    running = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.status == Status.IN_PROGRESS, Job.endpoint == job.endpoint)
    )
    snapshot = load_snapshot(session, job.endpoint) or {}
    idle, starting = None, 0
    if snapshot.get("health"):
        summary = worker_summary(snapshot.get("health"), snapshot.get("workers"))
        idle = summary.get("idle", 0) + summary.get("ready", 0)
        starting = summary.get("initializing", 0)
        running = max(running or 0, summary.get("running", 0))
    elapsed = None
    if job.status == Status.IN_PROGRESS and job.started_at:
        elapsed = max((utcnow() - _aware(job.started_at)).total_seconds(), 0.0)
    return Live(
        ahead=ahead or 0,
        running=running or 0,
        idle_workers=idle,
        starting_workers=starting,
        typical_s=typical_run_s(session, job.pipeline),
        elapsed_s=elapsed,
        unpicked_s=unpicked_s(job),
    )


def unpicked_s(job: Job) -> float | None:
    """Seconds a PENDING job has waited for a task worker to take it, past the grace.

    It waits from its creation, or from its last attempt's end when it was retried."""
    if job.status != Status.PENDING:
        return None
    since = _aware(job.created_at)
    attempt = job.current_attempt
    if attempt is not None:
        since = max(since, _aware(attempt.updated_at))
    waited = (utcnow() - since).total_seconds()
    return waited if waited >= services().settings.task_pickup_grace_s else None
