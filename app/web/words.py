"""The words the pages, the JSON API and the CLI show for a job: its status described for a
person, its attempts, its timings. Presentation only: the lifecycle decides, this words it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.endpoints.diagnosis import CHECKING
from app.lifecycle.status import WHAT_TO_DO_FAILED
from app.models import AttemptState, Job, Status
from app.web.live import Live


@dataclass(frozen=True)
class Description:
    phase: str  # queued | waiting | starting | running | cancelling | done | failed | cancelled
    headline: str  # what is happening, in words
    detail: str | None  # why, and what to do
    tone: str  # info | ok | warn | bad


def _about(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(round(seconds), 1)} s"
    return f"about {seconds / 60:.0f} min"


def _queued_words(job: Job, live: Live | None) -> Description:
    """IN_QUEUE: behind other jobs, a worker starting (cold start), or about to be taken."""
    if job.diagnosis == CHECKING:
        return Description("starting", "checking with the GPU endpoint", CHECKING, "info")
    if job.diagnosis:
        return Description("starting", "waiting for a GPU worker", job.diagnosis, "warn")
    eta = live.eta_s if live else None
    estimate = f"Estimated time until done: {_about(eta)}." if eta is not None else None
    if live and live.ahead:
        plural = "job" if live.ahead == 1 else "jobs"
        return Description(
            "waiting", f"waiting behind {live.ahead} {plural} in the GPU queue", estimate, "info"
        )
    if live and live.idle_workers:
        return Description(
            "starting", "queued: an idle GPU worker is about to take it", estimate, "info"
        )
    if live and live.idle_workers is not None and live.running and not live.starting_workers:
        return Description(
            "waiting", "queued: waiting for a busy GPU worker to finish its job", estimate, "info"
        )
    detail = "No GPU worker was idle, so one is starting: the first job after a quiet spell waits."
    if estimate:
        detail += " " + estimate
    return Description("starting", "a GPU worker is starting (cold start)", detail, "info")


def describe(job: Job, live: Live | None = None) -> Description:
    """The job's status in words a person understands; ``live`` (``app.web.live.live``) adds the
    queue position, cold start and estimate where a page has them."""
    status = Status(job.status)
    if job.cancel_requested_at and not job.terminal:
        return Description(
            "cancelling", "cancelling: asking the GPU endpoint to stop it", None, "warn"
        )
    if status == Status.PENDING:
        if job.diagnosis:
            return Description(
                "queued", "waiting: the GPU endpoint is unreachable", job.diagnosis, "warn"
            )
        if live is not None and live.unpicked_s is not None:
            return Description(
                "queued",
                "queued: no task worker has picked this job up for "
                f"{waited_words(live.unpicked_s)}",
                "The operators see this on their dashboard; the job starts when a task "
                "worker takes it, nothing is lost meanwhile.",
                "warn",
            )
        return Description("queued", "queued: waiting to be sent to the GPU endpoint", None, "info")
    if status == Status.SUBMITTING:
        return Description("queued", "sending the job to the GPU endpoint", job.diagnosis, "info")
    if status == Status.IN_QUEUE:
        return _queued_words(job, live)
    if status == Status.IN_PROGRESS:
        progress = job.progress or {}
        percent = progress.get("percent")
        words = "running on a GPU"
        if isinstance(percent, int | float):
            words += f" ({percent:.0f}%)"
        detail = job.diagnosis
        if not detail and live and live.elapsed_s is not None:
            if isinstance(percent, int | float) and 5 <= percent < 100:
                left = live.elapsed_s * (100 - percent) / percent
                detail = f"Estimated time left: {_about(left)}."
            elif live.eta_s is not None:
                detail = f"Estimated time left: {_about(live.eta_s)} (from recent runs)."
        return Description("running", words, detail, "info")
    if status == Status.COMPLETED:
        return Description("done", "done", None, "ok")
    if status == Status.CANCELLED:
        return Description("cancelled", "cancelled", job.error, "warn")
    if status == Status.TIMED_OUT:
        return Description("failed", "timed out", job.error, "bad")
    return Description("failed", "failed", job.error or "no reason was given", "bad")


@dataclass(frozen=True)
class AttemptRow:
    """One attempt as the job page lists it."""

    number: int
    words: str
    worker_id: str | None
    delay_ms: int | None
    execution_ms: int | None
    cost_usd: float | None
    started_at: Any
    finished_at: Any


ATTEMPT_WORDS = {
    AttemptState.CLAIMED: "being sent to the GPU endpoint",
    AttemptState.UNKNOWN: "sent; waiting for the endpoint to confirm",
    AttemptState.SENT: "sent to the GPU endpoint",
    AttemptState.FAILED: "not sent",
    AttemptState.SUPERSEDED: "replaced by a retry",
    AttemptState.DUPLICATE: "a duplicate run, cancelled",
}


def _reason(error: str) -> str:
    """An attempt's error without the advice the job's banner already gives."""
    reason = error.removeprefix("failed: ").replace(WHAT_TO_DO_FAILED, "").strip()
    reason = reason.rstrip(".")
    return reason if len(reason) <= 160 else reason[:157] + "..."


def attempt_rows(job: Job, now: Description | None = None) -> list[AttemptRow]:
    """Every attempt, oldest first, with its own outcome, worker, timings and cost; ``now``
    (the job's description) words the current one while it runs."""
    rows = []
    current = job.current_attempt
    for attempt in job.attempts:
        if attempt.outcome:
            words = attempt.outcome.lower().replace("_", " ")
            if attempt.error and attempt.outcome != Status.COMPLETED:
                words += f": {_reason(attempt.error)}"
        elif attempt is current and (
            job.status == Status.IN_PROGRESS
            or (attempt.state == AttemptState.SENT and not job.terminal)
        ):
            words = (now or describe(job)).headline
        else:
            words = ATTEMPT_WORDS.get(AttemptState(attempt.state), attempt.state.lower())
            if attempt.state == AttemptState.FAILED and attempt.error:
                words += f": {attempt.error[:200]}"
        rows.append(
            AttemptRow(
                number=attempt.number,
                words=words,
                worker_id=attempt.worker_id,
                delay_ms=attempt.delay_ms,
                execution_ms=attempt.execution_ms,
                cost_usd=attempt.cost_usd,
                started_at=attempt.started_at,
                finished_at=attempt.finished_at,
            )
        )
    return rows


def duration_s(job: Job) -> float | None:
    """How long the job ran on a GPU: the endpoint's execution time, else start to finish."""
    if job.execution_ms is not None:
        return job.execution_ms / 1000
    if job.started_at and job.finished_at:
        return max((job.finished_at - job.started_at).total_seconds(), 0.0)
    return None


def owner_words(job: Job) -> str:
    """Who created the job, without revealing anything secret (API owners are token hashes)."""
    if not job.owner:
        return "web form"
    return f"API token {job.owner.removeprefix('api:')[:8]}"


def timings(job: Job) -> dict[str, Any]:
    """Queue delay, execution time, cold start and estimated cost, where known."""
    return {
        "queue_delay_s": None if job.delay_ms is None else job.delay_ms / 1000,
        "execution_s": None if job.execution_ms is None else job.execution_ms / 1000,
        "cold_start_s": None if job.cold_start_ms is None else job.cold_start_ms / 1000,
        "cost_usd": job.cost_usd,
    }


def waited_words(seconds: float) -> str:
    """A wait as people say it: ``45 s``, ``2 min``, ``3 h 5 min``."""
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
