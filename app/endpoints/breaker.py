"""The breaker (issue 19): stop sending jobs to an endpoint whose workers crash-loop or that
answers Not Found / unauthorised, so nothing keeps billing while nothing can run.

It trips when ``BREAKER_CRASHES`` (3) workers crashed at start or before finishing a job
within ``BREAKER_WINDOW_S`` with no job completing since the first of them, or when the
endpoint refuses the app (Not Found, 401). The crash facts are the health snapshot's, read
by the same rules as the diagnosis (``deploy.runpod.diagnosis``: ``Facts.crashed``,
``crash_of``); one crash never trips it, and each endpoint has its own state.

Open, it holds every job for its endpoint with ``paused: <cause>`` (the cause in the
worker's own words, e.g. ``ModuleNotFoundError: No module named 'cv2'``); a Sentry event
and the dashboard's banner say the same with the fix. With ``BREAKER_SCALE_TO_ZERO=true``
on RunPod it sets the endpoint's ``workersMax`` to 0 (REST v2) and restores it on resume.
``resume`` (``flask admin resume ENDPOINT``, the dashboard's button) closes it with one
probe: the oldest held job goes first; the rest follow once a job completes.

State is one ``snapshots`` row per endpoint (``breaker:<name>``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.endpoints.billing import endpoint_of
from app.endpoints.diagnosis import facts_of
from app.endpoints.health import management, on_runpod
from app.models import Job, Snapshot, Status
from app.observability import capture
from app.settings import Settings
from deploy.runpod import diagnosis as rules
from deploy.runpod.management import ManagementError

PREFIX = "breaker:"
PAUSED = "paused: "  # how every held job's words begin
SEEN_KEPT = 500
# The line of a worker's log that names the error: "ModuleNotFoundError: No module named 'x'".
ERROR_LINE = re.compile(r"\b([A-Z]\w*(?:Error|Exception|Exit)\b(?::.*)?)$")


@dataclass(frozen=True)
class State:
    endpoint: str
    open: bool = False
    cause: str = ""
    fix: str = ""
    tripped_at: float | None = None
    probe: str | None = None  # the job let through after a resume, until one completes
    crashes: tuple[tuple[str, float], ...] = ()  # (worker id, when seen) in the window
    seen: tuple[str, ...] = ()  # crashed workers ever counted (a report lists them long)
    workers_max: int | None = None  # what scale-to-zero replaced, to restore
    workers_min: int | None = None

    @property
    def words(self) -> str:
        return f"{PAUSED}{self.cause}"


def _name(endpoint: str) -> str:
    return f"{PREFIX}{endpoint}"[:64]


def load(session: Session, endpoint: str) -> State:
    row = session.get(Snapshot, _name(endpoint))
    if row is None:
        return State(endpoint)
    data = dict(row.data)
    data["crashes"] = tuple(tuple(c) for c in data.get("crashes") or ())
    data["seen"] = tuple(data.get("seen") or ())
    return State(**data)


def save(session: Session, state: State) -> State:
    data = {
        "endpoint": state.endpoint,
        "open": state.open,
        "cause": state.cause,
        "fix": state.fix,
        "tripped_at": state.tripped_at,
        "probe": state.probe,
        "crashes": [list(c) for c in state.crashes],
        "seen": list(state.seen[-SEEN_KEPT:]),
        "workers_max": state.workers_max,
        "workers_min": state.workers_min,
    }
    row = session.get(Snapshot, _name(state.endpoint))
    if row is None:
        session.add(Snapshot(name=_name(state.endpoint), data=data))
    else:
        row.data = data
    session.commit()
    return state


def all_open(session: Session) -> list[State]:
    rows = session.scalars(select(Snapshot).where(Snapshot.name.startswith(PREFIX))).all()
    states = [load(session, row.data.get("endpoint") or row.name[len(PREFIX) :]) for row in rows]
    return [s for s in states if s.open]


def error_line(lines: list[str]) -> str | None:
    """The last log line naming an error, as the worker wrote it."""
    for line in reversed([str(x).strip() for x in lines]):
        found = ERROR_LINE.search(line)
        if found:
            return found.group(1)[:300]
    return None


def crash_cause(facts: rules.Facts) -> tuple[str, str]:
    """(cause, fix) in words, from the crash the diagnosis rules read."""
    crash = rules.crash_of(facts)
    lines = list(crash.lines) if crash else []
    lines.append(str((facts.crash_loop or {}).get("lastError") or ""))
    cause = error_line(lines)
    if cause is None:
        last = [x for x in (str(x).strip() for x in lines) if x]
        code = crash.code if crash else None
        cause = last[-1][:300] if last else f"the workers exit with code {code}"
    fix = (
        "fix the worker image (its requirements or start-up, see the worker log), deploy it, "
        "then resume the endpoint: flask admin resume ENDPOINT (or the dashboard's button)"
    )
    if cause.startswith("ModuleNotFoundError"):
        fix = (
            "add the missing module to the worker image (gpu_worker/requirements.txt or the "
            "pipeline's requirement set), rebuild and deploy it, then resume the endpoint: "
            "flask admin resume ENDPOINT"
        )
    elif crash is not None:
        for finding in rules.diagnose(facts):
            if finding.rule == crash.cause and finding.fix:
                fix = f"{finding.fix}; then resume the endpoint (flask admin resume ENDPOINT)"
                break
    return cause, fix


def observe(
    session: Session, settings: Settings, snapshot: dict[str, Any] | None, endpoint: str
) -> State | None:
    """Count the new crashes the snapshot shows; returns the state when this trips it."""
    state = load(session, endpoint)
    if state.open or not snapshot:
        return None
    if snapshot.get("unreachable"):
        return trip(session, settings, state, str(snapshot.get("error") or "Not Found"), REFUSED)
    if not snapshot.get("workers"):
        return None
    target = "runpod" if on_runpod(settings) else "local"
    facts = facts_of(snapshot.get("health"), snapshot.get("workers"), 0, target)
    now = time.time()
    seen = set(state.seen)
    # RunPod reports a worker that died at start as UNHEALTHY, without an exit code.
    dead = facts.crashed + [w for w in facts.workers if w.status == "unhealthy"]
    new = list({w.id: (w.id, now) for w in dead if w.id and w.id not in seen}.values())
    crashes = [c for c in (*state.crashes, *new) if c[1] >= now - settings.breaker_window_s]
    if crashes and _completed_since(session, endpoint, min(t for _, t in crashes)):
        crashes = []  # a job completed: the workers can run jobs, whatever crashed before
    state = State(
        **{
            **state.__dict__,
            "crashes": tuple(crashes),
            "seen": (*state.seen, *(i for i, _ in new)),
        }
    )
    if len(crashes) >= settings.breaker_crashes:
        cause, fix = crash_cause(facts)
        return trip(session, settings, state, cause, fix)
    save(session, state)
    return None


REFUSED = (
    "check RUNPOD_ENDPOINT_ID and RUNPOD_API_KEY; on RunPod a negative balance disables the "
    "endpoint (add funds, recreate it), then resume it: flask admin resume ENDPOINT"
)


def _completed_since(session: Session, endpoint: str, since: float) -> bool:
    when = datetime.fromtimestamp(since, UTC)
    jobs = session.scalars(
        select(Job).where(Job.status == Status.COMPLETED, Job.finished_at >= when)
    ).all()
    return any(endpoint_of(j) == endpoint for j in jobs)


def trip(session: Session, settings: Settings, state: State, cause: str, fix: str) -> State:
    """Open the breaker: hold the endpoint's jobs, say why, scale to zero where asked."""
    workers_max, workers_min = state.workers_max, state.workers_min
    if settings.breaker_scale_to_zero and on_runpod(settings):
        # An active worker (min > 0) bills too, and max may not go below min.
        before = _scale(settings, state.endpoint, {"min": 0, "max": 0})
        workers_max, workers_min = before.get("max"), before.get("min")
    state = State(
        **{
            **state.__dict__,
            "open": True,
            "cause": cause,
            "fix": fix,
            "tripped_at": time.time(),
            "probe": None,
            "crashes": (),
            "workers_max": workers_max,
            "workers_min": workers_min,
        }
    )
    save(session, state)
    capture(
        f"breaker open for endpoint {state.endpoint}: {cause}. Fix: {fix}",
        "error",
        endpoint=state.endpoint,
    )
    return state


def _scale(settings: Settings, endpoint: str, workers: dict[str, int]) -> dict[str, Any]:
    """Set the endpoint's REST v2 ``workers`` (``max``: the console's workersMax); returns
    what they were ({} when RunPod could not say)."""
    api = management(settings)
    endpoint_id = settings.fleet.get(endpoint).endpoint_id
    try:
        before = api.get_endpoint(endpoint_id).get("workers") or {}
        api.update_endpoint(endpoint_id, {"workers": workers})
    except (ManagementError, OSError) as exc:
        capture(f"breaker could not set the endpoint's workers to {workers}: {exc}", "error")
        return {}
    return {k: v for k, v in before.items() if k in ("min", "max") and isinstance(v, int)}


def resume(session: Session, settings: Settings, endpoint: str) -> State:
    """Close the breaker; the oldest held job becomes the probe (the caller enqueues it)."""
    state = load(session, endpoint)
    if state.workers_max is not None and on_runpod(settings):
        _scale(settings, endpoint, {"min": state.workers_min or 0, "max": state.workers_max})
    held = held_jobs(session, endpoint)
    state = State(
        endpoint,
        probe=held[0].id if held else None,
        seen=state.seen,
    )
    return save(session, state)


def held_jobs(session: Session, endpoint: str) -> list[Job]:
    """This endpoint's jobs the breaker holds (PENDING with the paused words), oldest first."""
    jobs = session.scalars(
        select(Job)
        .where(Job.status == Status.PENDING, Job.diagnosis.startswith(PAUSED))
        .order_by(Job.created_at)
    ).all()
    return [j for j in jobs if endpoint_of(j) == endpoint]


def pause_reason(session: Session, job: Job, endpoint: str) -> str | None:
    """Why ``job`` may not be sent to ``endpoint`` now, or None when it may."""
    state = load(session, endpoint)
    if state.open:
        return state.words
    if state.probe and state.probe != job.id:
        probe = session.get(Job, state.probe)
        if probe is not None and not probe.terminal:
            return f"{PAUSED}waiting for the probe job after a resume ({state.cause or 'resumed'})"
        if probe is not None and probe.status != Status.COMPLETED:
            return None  # the probe failed; new crashes will trip the breaker again
        save(session, State(**{**state.__dict__, "probe": None}))
    return None
