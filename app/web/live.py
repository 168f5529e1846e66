"""What a waiting or running job's page says beyond its own row: its place in the queue,
whether a GPU worker is starting, and an estimate from recent runs of the same pipeline.

Everything comes from the database (the job rows and the endpoint snapshot reconcile
writes), never from RunPod, so pages can ask for it every second. The job page, the JSON
API and the dashboard's in-flight list all read ``live``: one estimate, one set of words.

The estimate plays the queue forward: each worker slot is free once its running job has
had its pipeline's median run time, each job ahead takes the next free slot for its own
pipeline's median, and this job starts when a slot is free after them. The range runs the
same play with the 25th and 75th percentiles of recent run times.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

# The one reading of "workers by state" from /health and /workers (diagnosis owns it).
from app.endpoints.diagnosis import worker_summary
from app.endpoints.health import load_snapshot
from app.models import Job, Status, utcnow
from app.services import services

# The worker's error_kind for a model that cannot be loaded (gpu_worker.errors.ModelLoadError).
MODEL_UNAVAILABLE = "model_unavailable"
RECENT_RUNS = 20  # how many completed jobs of a pipeline the estimate looks at
QUEUED = (Status.SUBMITTING, Status.IN_QUEUE)
_QUEUED_VALUES = [s.value for s in QUEUED]


@dataclass(frozen=True)
class RunTimes:
    """A pipeline's recent run times: the median and the quartiles around it, in seconds."""

    low: float
    median: float
    high: float
    runs: int


@dataclass(frozen=True)
class Live:
    """The queue around one job. ``idle_workers`` is None without an endpoint snapshot."""

    position: int  # 1-based place among the endpoint's queued jobs; 0 when not queued
    queued: int  # how many jobs are queued at the endpoint, this one included
    running: int  # jobs a worker is running now
    idle_workers: int | None
    starting_workers: int
    runs: RunTimes | None  # recent run times of this job's pipeline
    elapsed_s: float | None  # how long this job has been running
    # How long a PENDING job has waited for a Celery task worker, once past the grace.
    unpicked_s: float | None = None
    # The play-forward's answers, (low, high) seconds from now; None without run times.
    start_in_s: tuple[float, float] | None = None
    done_in_s: tuple[float, float] | None = None
    starts_s: float | None = None  # the median play's start, seconds from now
    done_s: float | None = None  # the median play's end

    @property
    def eta_s(self) -> float | None:
        """Seconds until the job is done, roughly; None without recent runs to go by."""
        if self.done_s is not None:
            return self.done_s
        if self.runs is not None and self.elapsed_s is not None:
            return max(self.runs.median - self.elapsed_s, 0.0)
        return None

    @property
    def ahead(self) -> int:
        return max(self.position - 1, 0)

    @property
    def typical_s(self) -> float | None:
        return self.runs.median if self.runs else None

    @property
    def all_busy(self) -> bool:
        """Every worker known is running a job (none idle): the wait is for one to finish."""
        return self.running > 0 and not self.idle_workers


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=utcnow().tzinfo)  # SQLite hands back naive UTC
    return moment


def run_times(session: Session, pipeline: str) -> RunTimes | None:
    """The pipeline's last ``RECENT_RUNS`` completed jobs' execution times."""
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
    if not rows:
        return None
    seconds = sorted(ms / 1000 for ms in rows)
    median = statistics.median(seconds)
    if len(seconds) < 2:
        return RunTimes(median, median, median, 1)
    low, _, high = statistics.quantiles(seconds, n=4, method="inclusive")
    return RunTimes(low, median, high, len(seconds))


def typical_run_s(session: Session, pipeline: str) -> float | None:
    """Median execution time of the pipeline's recent completed jobs."""
    runs = run_times(session, pipeline)
    return runs.median if runs else None


def play_forward(
    running_left: Sequence[float], slots: int, ahead: Sequence[float], own: float
) -> tuple[float, float]:
    """``(start, done)`` seconds from now for a job that runs ``own`` seconds, queued behind
    jobs of ``ahead`` seconds each, on ``slots`` workers whose running jobs have
    ``running_left`` seconds to go. Jobs start in queue order on the first free worker."""
    free = sorted(running_left)[: max(slots, 1)]
    free += [0.0] * (max(slots, 1) - len(free))
    heapq.heapify(free)
    for seconds in ahead:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    start = heapq.heappop(free)
    return start, start + own


def live(session: Session, job: Job) -> Live | None:
    """The queue around ``job``; None once it has ended."""
    if job.terminal:
        return None
    now = utcnow()
    is_queued = job.status in _QUEUED_VALUES or job.status == Status.PENDING
    ahead_rows, queued = _queue_ahead(session, job) if is_queued else ([], 0)
    running_rows = _running_others(session, job)
    running = len(running_rows) + (1 if job.status == Status.IN_PROGRESS else 0)
    idle, starting, running = _workers(session, job.endpoint, running)
    elapsed = None
    if job.status == Status.IN_PROGRESS and job.started_at:
        elapsed = max((now - _aware(job.started_at)).total_seconds(), 0.0)
    times = _RunTimesCache(session)
    runs = times(job.pipeline)
    forecast = _Forecast()
    if runs is not None and is_queued:
        slots = max(running + (idle or 0), 1)
        forecast = _forecast(times, runs, running_rows, ahead_rows, slots, now)
    return Live(
        position=len(ahead_rows) + 1 if is_queued else 0,
        queued=queued or 0,
        running=running,
        idle_workers=idle,
        starting_workers=starting,
        runs=runs,
        elapsed_s=elapsed,
        start_in_s=forecast.start_in,
        done_in_s=forecast.done_in,
        starts_s=forecast.starts,
        done_s=forecast.done,
        unpicked_s=unpicked_s(job),
    )


def _queue_ahead(session: Session, job: Job) -> tuple[Sequence[str], int]:
    """The pipelines of the jobs queued ahead of ``job``, oldest first, and how many are
    queued at its endpoint, ``job`` included."""
    # The endpoint's queue (the app's own rows: RunPod's position is not published): each
    # endpoint has its own queue and workers, so only the rows of job.endpoint count.
    since = func.coalesce(Job.submitted_at, Job.created_at)
    mine = _aware(job.submitted_at or job.created_at)
    ahead_rows = session.scalars(
        select(Job.pipeline)
        .where(
            Job.status.in_(_QUEUED_VALUES),
            Job.endpoint == job.endpoint,
            Job.id != job.id,
            since < mine,
        )
        .order_by(since)
    ).all()
    queued = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.status.in_(_QUEUED_VALUES), Job.endpoint == job.endpoint)
    )
    if job.status not in _QUEUED_VALUES:
        queued += 1  # a PENDING job counts itself though it is not at the endpoint yet
    return ahead_rows, queued


def _running_others(session: Session, job: Job) -> Sequence[tuple[str, datetime | None]]:
    """``(pipeline, started_at)`` of the other jobs running on ``job``'s endpoint."""
    return session.execute(
        select(Job.pipeline, Job.started_at).where(
            Job.status == Status.IN_PROGRESS, Job.endpoint == job.endpoint, Job.id != job.id
        )
    ).all()


def _workers(session: Session, endpoint: str, running: int) -> tuple[int | None, int, int]:
    """``(idle, starting, running)`` workers by the endpoint's snapshot; idle is None
    without one, and running is never below the jobs the rows say are running."""
    snapshot = load_snapshot(session, endpoint) or {}
    if not snapshot.get("health"):
        return None, 0, running
    summary = worker_summary(snapshot.get("health"), snapshot.get("workers"))
    idle = summary.get("idle", 0) + summary.get("ready", 0)
    return idle, summary.get("initializing", 0), max(running, summary.get("running", 0))


class _RunTimesCache:
    """``run_times`` per pipeline, each asked of the database once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.known: dict[str, RunTimes | None] = {}

    def __call__(self, pipeline: str) -> RunTimes | None:
        if pipeline not in self.known:
            self.known[pipeline] = run_times(self.session, pipeline)
        return self.known[pipeline]


@dataclass(frozen=True)
class _Forecast:
    start_in: tuple[float, float] | None = None
    done_in: tuple[float, float] | None = None
    starts: float | None = None
    done: float | None = None


def _forecast(
    times: _RunTimesCache,
    runs: RunTimes,
    running_rows: Sequence[tuple[str, datetime | None]],
    ahead_rows: Sequence[str],
    slots: int,
    now: datetime,
) -> _Forecast:
    """The queue played forward with the low, median and high run times: the low and high
    plays give the ranges, the median play the single answers."""
    ends = []
    for pick in ("low", "median", "high"):
        left = []
        for pipeline, started in running_rows:
            took = times(pipeline) or runs
            ran = (now - _aware(started)).total_seconds() if started else 0.0
            left.append(max(getattr(took, pick) - ran, 0.0))
        ahead = [getattr(times(p) or runs, pick) for p in ahead_rows]
        ends.append(play_forward(left, slots, ahead, getattr(runs, pick)))
    starts, done = ends[1]
    return _Forecast((ends[0][0], ends[2][0]), (ends[0][1], ends[2][1]), starts, done)


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


def unavailable_pipelines(session: Session, names: Sequence[str]) -> dict[str, Job]:
    """The pipelines whose latest finished job failed because the worker could not load the
    model, each with that job (its error is the operator's clue). A later completed job
    clears the mark: the fix worked."""
    marked: dict[str, Job] = {}
    for name in names:
        latest = session.scalars(
            select(Job)
            .where(Job.pipeline == name, Job.status.in_([Status.COMPLETED, Status.FAILED]))
            .order_by(Job.finished_at.desc())
            .limit(1)
        ).first()
        if latest is not None and latest.failure_kind == MODEL_UNAVAILABLE:
            marked[name] = latest
    return marked
