"""The words the pages, the JSON API and the CLI show for a job: its status described for a
person, its attempts, its timings. Presentation only: the lifecycle decides, this words it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.endpoints.diagnosis import CHECKING
from app.lifecycle.status import WHAT_TO_DO_FAILED
from app.models import AttemptState, Job, Status
from app.storage import safe_name
from app.web.live import MODEL_UNAVAILABLE, Live, live
from deploy.runpod.vocabulary import CRASH_LOOP_ERROR

# Issue 19: a job held back, by a spent budget or an open breaker; nothing was sent yet.
HELD = ("waiting: the ", "paused: ")
HELD_DETAIL = "Nothing was sent to a GPU and nothing is billed; it starts by itself once released."


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


def _span(seconds: float) -> tuple[int, str]:
    if seconds < 90:
        return max(round(seconds), 1), "s"
    return max(round(seconds / 60), 2), "min"


def about_range(low: float, high: float) -> str:
    """``about 20–40 s``, ``about 2–3 min``, ``about 40 s–2 min``: an estimate as a range."""
    (a, unit_a), (b, unit_b) = _span(low), _span(max(high, low))
    if (a, unit_a) == (b, unit_b):
        return f"about {a} {unit_a}"
    if unit_a == unit_b:
        return f"about {a}–{b} {unit_a}"
    return f"about {a} {unit_a}–{b} {unit_b}"


def _estimate(job: Job, live: Live | None) -> str | None:
    if live is None or live.start_in_s is None or live.done_in_s is None or live.runs is None:
        if live is not None and live.runs is None:
            return f"No estimate yet: no {job.pipeline} job has finished here to go by."
        return None
    runs = "run" if live.runs.runs == 1 else "runs"
    starts = about_range(*live.start_in_s)
    done = about_range(*live.done_in_s)
    if live.start_in_s[1] < 1:
        return f"Done in {done} (from the last {live.runs.runs} {runs} of {job.pipeline})."
    return (
        f"Starts in {starts}, done in {done} "
        f"(from the last {live.runs.runs} {runs} of {job.pipeline})."
    )


def _joined(*parts: str | None) -> str | None:
    text = " ".join(p for p in parts if p)
    return text or None


def _queued_words(job: Job, live: Live | None) -> Description:
    """IN_QUEUE: behind other jobs, every worker busy, a worker starting, or about to go.
    "Cold start" only when no worker is running anything: a busy worker is not starting."""
    if job.diagnosis == CHECKING:
        return Description("starting", "checking with the GPU endpoint", CHECKING, "info")
    if job.diagnosis:
        return Description("starting", "waiting for a GPU worker", job.diagnosis, "warn")
    if live is None:
        return Description("waiting", "queued at the GPU endpoint", None, "info")
    estimate = _estimate(job, live)
    place = f"{live.position} of {live.queued} in the GPU queue"
    if live.ahead:
        plural = "job" if live.ahead == 1 else "jobs"
        why = "every GPU worker is busy" if live.all_busy else "GPU workers are on their way"
        return Description(
            "waiting",
            f"waiting behind {live.ahead} {plural}: {place}",
            _joined(f"{live.ahead} {plural} ahead of it; {why}.", estimate),
            "info",
        )
    if live.idle_workers:
        return Description(
            "starting",
            f"queued: an idle GPU worker is about to take it ({place})",
            estimate,
            "info",
        )
    if live.running:
        more = " Another worker is starting." if live.starting_workers else ""
        return Description(
            "waiting",
            f"queued: next, waiting for a busy GPU worker to finish its job ({place})",
            _joined(more.strip() or None, estimate),
            "info",
        )
    if live.idle_workers is None and not live.starting_workers:
        # No report from the endpoint yet: whether a worker is starting is not known.
        return Description(
            "waiting", f"queued: waiting for a GPU worker ({place})", estimate, "info"
        )
    detail = "No GPU worker was idle, so one is starting: the first job after a quiet spell waits."
    return Description(
        "starting", "a GPU worker is starting (cold start)", _joined(detail, estimate), "info"
    )


def _running_left(live: Live, percent: object) -> float | None:
    """Seconds left for a running job: the pipeline's median run time less what it has run,
    weighed against its own progress as the progress grows (early percentages are noisy, so
    they count little; the median alone jumps when a run is slower than usual)."""
    if live.elapsed_s is None:
        return None
    from_runs = max(live.runs.median - live.elapsed_s, 0.0) if live.runs else None
    from_progress = None
    if isinstance(percent, int | float) and 5 <= percent < 100:
        from_progress = live.elapsed_s * (100 - percent) / percent
    if from_progress is None:
        return from_runs
    if from_runs is None:
        return from_progress if percent >= 20 else None
    weight = percent / 100
    return weight * from_progress + (1 - weight) * from_runs


# Errno numbers and absolute paths do not reach people's pages (the worker scrubs its own
# messages the same way, in gpu_worker/errors.py, which the app may not import).
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
_PATH = re.compile(
    r"'/[^']*'|\"/[^\"]*\"|(?<![\w.:/])/(?:tmp|var|runpod-volume|opt|home|root|srv)/\S+"
)


_EXCEPTION = re.compile(r"^[A-Z]\w*(?:Error|Exception): ")  # "EchoError: boom" -> "boom"


def public(text: str) -> str:
    """``text`` without errno numbers and file-system paths."""
    return _PATH.sub("a job file", _ERRNO.sub("", text)).strip()


TELL = "If it happens again, tell whoever runs this service and give them the job id {id}."


def user_error(job: Job) -> str:
    """A failed or timed-out job in one short paragraph for the person who submitted it:
    what happened, whether Retry can help, whom to tell. The technical text (``job.error``,
    ``job.error_detail``) is for operators: the job page shows it to admins only."""
    tell = TELL.format(id=job.id[:8])
    kind = job.failure_kind
    if job.status == Status.TIMED_OUT:
        return (
            f"The job took longer than this service allows. Retrying will not help with the "
            f"same input: try a shorter or smaller file. {tell}"
        )
    if kind == MODEL_UNAVAILABLE:
        return (
            f"The {job.pipeline} pipeline is unavailable: the GPU worker could not load its "
            "model. Retrying will not help until an operator fixes it; tell whoever runs this "
            f"service (job id {job.id[:8]}), or choose another pipeline."
        )
    if worker_said(job).startswith(CRASH_LOOP_ERROR):
        return (
            f"The GPU workers of the {job.pipeline} pipeline could not start, so the job never "
            "ran. Retrying will not help until an operator fixes them; tell whoever runs this "
            f"service (job id {job.id[:8]})."
        )
    if kind in ("storage_unreachable", "app_unreachable"):
        return (
            "The GPU worker could not reach this app to fetch the file or return the result. "
            f"It was a connection problem, not your file: press Retry. {tell}"
        )
    reason = _reason(job.error or "", job.pipeline, 200)
    said = f" It said: {reason}." if reason else ""
    return (
        f"The {job.pipeline} pipeline stopped with an error.{said} If the input or the "
        f"parameters were wrong, change them and press Retry; otherwise Retry may help once. "
        f"{tell}"
    )


def technical_error(job: Job) -> str | None:
    """``job.error`` for operators, when the submitter's sentence leaves something out
    (an errno, a path, the worker's own words); None when it would only repeat it."""
    if not job.error or job.status not in (Status.FAILED, Status.TIMED_OUT):
        return None
    raw = job.error.removeprefix("failed: ").replace(WHAT_TO_DO_FAILED, "").strip().rstrip(". ")
    raw = raw.removeprefix("the GPU handler reported an error: ")
    return None if raw in user_error(job) else job.error


def worker_said(job: Job) -> str:
    """The recorded error as the worker gave it, without the advice meant for the page."""
    return (job.error or "").removeprefix("failed: ").replace(WHAT_TO_DO_FAILED, "").strip()


def operator_fix(job: Job) -> str | None:
    """What an operator does about a failure the submitter cannot fix, when the app knows."""
    if job.failure_kind == MODEL_UNAVAILABLE:
        return (
            f"A GPU worker could not load the {job.pipeline} model, so the upload form marks "
            "the pipeline unavailable. Check that the workers can reach the model's source and "
            f"that its settings name a model that exists, then run one {job.pipeline} job: "
            "when it completes, the mark is cleared."
        )
    if job.failure_kind in ("storage_unreachable", "app_unreachable"):
        return (
            "The GPU worker could not reach this app: check PUBLIC_BASE_URL and that the app "
            "answers from the workers' network."
        )
    return None


def describe(job: Job, live: Live | None = None) -> Description:
    """The job's status in words a person understands; ``live`` (``app.web.live.live``) adds the
    queue position, cold start and estimate where a page has them."""
    status = Status(job.status)
    if job.cancel_requested_at and not job.terminal:
        return Description(
            "cancelling", "cancelling: asking the GPU endpoint to stop it", None, "warn"
        )
    if status == Status.PENDING:
        if job.diagnosis and job.diagnosis.startswith(HELD):  # issue 19: a budget, the breaker
            return Description("queued", job.diagnosis, HELD_DETAIL, "warn")
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
        if not detail and live is not None:
            left = _running_left(live, percent)
            if left is not None:
                detail = f"Estimated time left: {_about(left)}."
        return Description("running", words, detail, "info")
    if status == Status.COMPLETED:
        return Description("done", "done", None, "ok")
    if status == Status.CANCELLED:
        return Description("cancelled", "cancelled", job.error, "warn")
    if status == Status.TIMED_OUT:
        return Description("failed", "timed out", user_error(job), "bad")
    return Description("failed", "failed", user_error(job), "bad")


def describe_now(session: Session, job: Job) -> Description:
    """``describe`` with the queue around the job: the words the job page, the jobs list and
    the dashboard's in-flight list all show (one estimate, one wording)."""
    return describe(job, live(session, job))


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


def _reason(error: str, pipeline: str, limit: int = 160) -> str:
    """A recorded error in a person's words: without "failed" said again, the advice the
    banner gives, the exception's class name, errno numbers and paths."""
    reason = error.removeprefix("failed: ").replace(WHAT_TO_DO_FAILED, "").strip()
    for prefix in ("the GPU handler reported an error: ", f"pipeline {pipeline} failed: "):
        reason = reason.removeprefix(prefix)
    reason = public(_EXCEPTION.sub("", reason).rstrip(". "))
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def _attempt_reason(error: str, pipeline: str) -> str:
    """An attempt's error as everyone may read it: the endpoint's crash-loop report (exit
    codes, log lines) is for operators, who see it in the job's operator details."""
    if error.removeprefix("failed: ").startswith(CRASH_LOOP_ERROR):
        return "the GPU workers could not start"
    return _reason(error, pipeline)


def attempt_rows(job: Job, now: Description | None = None) -> list[AttemptRow]:
    """Every attempt, oldest first, with its own outcome, worker, timings and cost; ``now``
    (the job's description) words the current one while it runs."""
    rows = []
    current = job.current_attempt
    for attempt in job.attempts:
        if attempt.outcome:
            words = attempt.outcome.lower().replace("_", " ")
            if attempt.error and attempt.outcome != Status.COMPLETED:
                words += f": {_attempt_reason(attempt.error, job.pipeline)}"
        elif attempt is current and (
            job.status == Status.IN_PROGRESS
            or (attempt.state == AttemptState.SENT and not job.terminal)
        ):
            words = (now or describe(job)).headline
        else:
            words = ATTEMPT_WORDS.get(AttemptState(attempt.state), attempt.state.lower())
            if attempt.state == AttemptState.FAILED and attempt.error:
                words += f": {_attempt_reason(attempt.error, job.pipeline)}"
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
    if job.token_name:
        return f"API token {job.token_name}"
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


def download_name(job: Job) -> str:
    """What a result is saved as: ``<input name>-<pipeline>.<ext>`` (``clip-upscale.mp4``)."""
    stem = safe_name(job.input_name or "result").rsplit(".", 1)[0] or "result"
    ext = (job.output_key or "").rsplit("/", 1)[-1].rpartition(".")[2]
    return f"{stem}-{job.pipeline}.{ext}" if ext else f"{stem}-{job.pipeline}"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def result_summary(job: Job) -> list[str]:
    """What the pipeline did, in a few phrases from the worker's result fields: sizes
    (320×240 → 640×480), frames, audio. Empty when the result says nothing of the kind."""
    body = job.result if isinstance(job.result, dict) else {}
    fields = body.get("result") if isinstance(body.get("result"), dict) else body
    metrics = body.get("metrics") if isinstance(body.get("metrics"), dict) else {}
    said = []
    width, height = _number(fields.get("width")), _number(fields.get("height"))
    scale = _number(fields.get("scale")) or _number((job.params or {}).get("scale"))
    if width and height:
        if scale and scale != 1:
            said.append(
                f"{round(width / scale)}×{round(height / scale)} → {width:.0f}×{height:.0f}"
            )
        else:
            said.append(f"{width:.0f}×{height:.0f}")
    frames = _number(fields.get("frames")) or _number(metrics.get("frames"))
    if frames:
        fps = _number(fields.get("fps"))
        said.append(f"{frames:.0f} frames" + (f" at {fps:g} fps" if fps else ""))
    if fields.get("audio") is True:
        said.append("audio kept")
    elif fields.get("audio") is False:
        said.append("no audio track")
    items = _number(metrics.get("items"))
    if not said and items:
        said.append(f"{items:.0f} file{'' if items == 1 else 's'} processed")
    if isinstance(fields.get("model"), str):
        said.append(f"model {fields['model']}")
    return said
