"""The bill per worker, attributed to jobs (issue 19): what RunPod charges, not only execution.

RunPod bills each worker from its start to its stop: container start, model load, the jobs,
and the idle timeout after the last one. ``refresh`` reads each worker's life and stores its
billed seconds in ``billed_seconds``, one row per (worker, job) and one for idle:

- start-up (start to ready: container start and model load) goes to the job that woke the
  worker, each job's span to that job, the rest (between jobs, the idle tail) to ``idle`` of
  the worker's endpoint;
- the local endpoint records each life to the millisecond and serves it at ``/billing``;
- on RunPod, REST v2 lists each worker with its uptime (``deploy.runpod.management``); the
  job spans are this app's own (``started_at`` + execution time of the jobs that worker ran),
  the start-up is the worker's start to its first job, the rest idle.

A job's ``cost_usd`` is the sum of its rows × the price book's per-second price
(``deploy.runpod.prices``; ``GPU_PRICE_PER_SECOND`` overrides it). Until the bill has been
read, ``app.lifecycle.status`` shows execution × price as an estimate.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.endpoints.health import management, on_runpod
from app.endpoints.routing import DEFAULT, RoutingError, read_spec
from app.models import IDLE, Attempt, BilledSeconds, Job, utcnow
from app.services import JobAPIError
from app.settings import Settings
from deploy.runpod.management import ManagementError
from deploy.runpod.prices import PriceError, price_per_second

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = DEFAULT  # the one endpoint of a single-endpoint configuration
READ_BACK_S = 2 * 24 * 3600  # lives started earlier than this are final in the table already


def price(settings: Settings, endpoint: str = DEFAULT) -> float:
    """USD per second of one (flex) worker of ``endpoint``, from the price book.

    A named endpoint is priced as its spec says (``deploy/endpoints/<name>.toml``:
    ``gpu_tiers``, ``gpu_count``, ``[pricing] flex_per_s``), the ``default`` one, or an
    endpoint without a spec, at ``GPU_POOLS``. Overrides, most specific first, as
    ``deploy cost`` takes them: the spec's ``[pricing]``, then ``GPU_PRICE_PER_SECOND``."""
    pools, count, override = settings.gpu_pools, 1, settings.gpu_price_per_second or None
    if endpoint != DEFAULT:
        spec = _spec(settings.endpoint_specs_dir, endpoint)
        tiers = spec.get("gpu_tiers")
        if isinstance(tiers, list) and tiers and all(isinstance(t, str) for t in tiers):
            pools = tuple(tiers)
        if isinstance(spec.get("gpu_count"), int) and spec["gpu_count"] > 0:
            count = spec["gpu_count"]
        flex = spec.get("flex_per_s")
        if isinstance(flex, int | float) and flex > 0:
            override = float(flex)
    try:
        return price_per_second(pools, override=override, gpu_count=count)
    except PriceError as exc:  # e.g. a pool RunPod publishes no price for, and no override
        log.warning("endpoint %s priced at GPU_POOLS: %s", endpoint, exc)
        return price_per_second(settings.gpu_pools, override=settings.gpu_price_per_second or None)


@functools.lru_cache(maxsize=32)
def _spec(specs_dir: str, name: str) -> dict[str, Any]:
    """What pricing reads of an endpoint's spec: its ``[endpoint]`` table plus ``[pricing]``'s
    ``flex_per_s``; {} when there is none (routing has already refused a missing one)."""
    try:
        data = read_spec(specs_dir, name)
    except RoutingError:
        return {}
    endpoint = data.get("endpoint") if isinstance(data.get("endpoint"), dict) else {}
    pricing = data.get("pricing") if isinstance(data.get("pricing"), dict) else {}
    return {**endpoint, "flex_per_s": pricing.get("flex_per_s")}


def endpoint_of(job: Job) -> str:
    """The name of the endpoint a job goes to (``Job.endpoint``)."""
    return job.endpoint or DEFAULT_ENDPOINT


@dataclass(frozen=True)
class Life:
    """One worker's billed life, attributed: ``charges`` maps a RunPod job id (or IDLE) to
    its seconds; ``startup`` is the part of the waking job's seconds before it was ready."""

    worker_id: str
    started_at: float
    open: bool
    charges: dict[str, float]
    woken_by: str | None
    startup: float


def local_lives(bill: dict[str, Any]) -> list[Life]:
    """The local endpoint's ``/billing`` answer as lives (its attribution, unchanged)."""
    lives = []
    for worker in bill.get("workers") or []:
        attributed = worker.get("attributed") or {}
        lives.append(
            Life(
                worker_id=str(worker.get("workerId") or ""),
                started_at=float(worker.get("startedAt") or 0),
                open=worker.get("exitedAt") is None,
                charges={str(k): float(v) for k, v in attributed.items()},
                woken_by=worker.get("wokenBy"),
                startup=float(worker.get("startupSeconds") or 0),
            )
        )
    return lives


def runpod_lives(session: Session, listing: dict[str, Any], now: float) -> list[Life]:
    """RunPod's REST v2 workers (uptime only) with this app's job spans on each of them."""
    lives = []
    for worker in listing.get("workers") or []:
        worker_id = str(worker.get("id") or "")
        uptime = worker.get("uptimeSeconds")
        if not worker_id or not isinstance(uptime, int | float):
            continue
        started = now - float(uptime)
        jobs = session.scalars(
            select(Job).where(Job.worker_id == worker_id).order_by(Job.started_at)
        ).all()
        charges: dict[str, float] = {}
        busy = 0.0
        for job in jobs:
            run = (job.execution_ms or 0) / 1000
            if job.runpod_id and run:
                charges[job.runpod_id] = run
                busy += run
        first = jobs[0] if jobs else None
        startup = 0.0
        if first is not None and first.runpod_id and first.started_at:
            startup = max(0.0, _epoch(first.started_at) - started)
            charges[first.runpod_id] = charges.get(first.runpod_id, 0.0) + startup
        idle = max(0.0, float(uptime) - busy - startup)
        if idle:
            charges[IDLE] = idle
        lives.append(
            Life(worker_id, started, True, charges, first.runpod_id if first else None, startup)
        )
    return lives


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def read_lives(session: Session, settings: Settings, api: Any) -> list[Life]:
    """Every worker life the endpoint can tell of; [] (logged) when it cannot say."""
    now = time.time()
    if on_runpod(settings):
        try:
            listing = management(settings).list_workers(api.endpoint_id)
            return runpod_lives(session, listing, now)
        except (ManagementError, OSError) as exc:
            log.warning("cannot list RunPod workers for the bill: %s", exc)
            return []
    try:
        return local_lives(api.billing(now - READ_BACK_S))
    except JobAPIError as exc:
        log.warning("cannot read the endpoint's billing: %s", exc)
        return []


def store(session: Session, lives: list[Life], usd_per_s: float, endpoint: str) -> set[str]:
    """Write each life's charges to ``billed_seconds``; returns the job ids charged."""
    runpod_ids = {key for life in lives for key in life.charges if key != IDLE}
    jobs: dict[str, Job] = {}
    if runpod_ids:
        rows = session.execute(
            select(Attempt.runpod_id, Job).join(Job).where(Attempt.runpod_id.in_(runpod_ids))
        ).all()
        jobs = {runpod_id: job for runpod_id, job in rows}
    charged: set[str] = set()
    for life in lives:
        started = datetime.fromtimestamp(life.started_at, UTC)
        existing = {
            row.charged_to: row
            for row in session.scalars(
                select(BilledSeconds).where(BilledSeconds.worker_id == life.worker_id)
            )
        }
        for key, seconds in life.charges.items():
            job = jobs.get(key)
            # Another client's job on the same endpoint still bills: kept under its id.
            charged_to = job.id if job else key if key == IDLE else f"other:{key}"[:64]
            startup = min(seconds, life.startup) if key == life.woken_by else 0.0
            row = existing.get(charged_to)
            if row is None:
                row = BilledSeconds(worker_id=life.worker_id, charged_to=charged_to)
                session.add(row)
                existing[charged_to] = row
                row.startup_s = row.run_s = row.idle_s = 0.0
            row.endpoint = endpoint_of(job) if job else endpoint
            row.pipeline = job.pipeline if job else None
            row.startup_s = round(startup, 6)
            row.run_s = round(seconds - startup, 6) if key != IDLE else 0.0
            row.idle_s = round(seconds, 6) if key == IDLE else 0.0
            row.usd = round(seconds * usd_per_s, 8)
            row.worker_started_at = started
            row.open = life.open
            if job:
                charged.add(job.id)
    session.flush()
    for job_id in charged:
        usd = session.scalar(
            select(func.sum(BilledSeconds.usd)).where(BilledSeconds.charged_to == job_id)
        )
        # A plain UPDATE: no version bump, so a poll or webhook applying a status to the
        # same row meanwhile is not made stale by the bill (its own write keeps the larger).
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(cost_usd=round(float(usd or 0.0), 6))
            .execution_options(synchronize_session=False)
        )
    session.commit()
    return charged


def refresh(
    session: Session, settings: Settings, api: Any, endpoint: str = DEFAULT_ENDPOINT
) -> int:
    """Read the bill and store it; returns how many jobs' costs it set."""
    if not settings.configured(endpoint):
        return 0
    lives = read_lives(session, settings, api)
    return len(store(session, lives, price(settings, endpoint), endpoint))


@dataclass(frozen=True)
class Parts:
    """A job's bill in parts (seconds) and in USD; ``so_far`` while it may still grow."""

    start_s: float
    model_load_s: float
    run_s: float
    upload_s: float
    usd: float
    so_far: bool


def parts(session: Session, job: Job) -> Parts | None:
    """The billed parts of ``job``: start (the worker's start-up, when this job woke it),
    model load and upload (the worker's own metrics, taken out of the job's span), run."""
    rows = session.scalars(select(BilledSeconds).where(BilledSeconds.charged_to == job.id)).all()
    if not rows:
        return None
    startup = sum(r.startup_s for r in rows)
    span = sum(r.run_s for r in rows)
    metrics = (job.result or {}).get("metrics") or {}
    load = _seconds(metrics.get("model_load_s"), span)
    upload = _seconds(metrics.get("upload_s"), span - load)
    return Parts(
        start_s=round(startup, 3),
        model_load_s=round(load, 3),
        run_s=round(span - load - upload, 3),
        upload_s=round(upload, 3),
        usd=round(sum(r.usd for r in rows), 6),
        so_far=not job.terminal,
    )


def _seconds(value: Any, most: float) -> float:
    return (
        min(float(value), max(most, 0.0)) if isinstance(value, int | float) and value > 0 else 0.0
    )


def spent(
    session: Session, since: datetime, endpoint: str | None = None, until: datetime | None = None
) -> float:
    """USD billed for workers started since ``since`` (all endpoints, or one)."""
    query = select(BilledSeconds.usd).where(BilledSeconds.worker_started_at >= since)
    if until is not None:
        query = query.where(BilledSeconds.worker_started_at < until)
    if endpoint is not None:
        query = query.where(BilledSeconds.endpoint == endpoint)
    return float(sum(session.scalars(query).all()))


@dataclass(frozen=True)
class Day:
    day: date
    by_endpoint: dict[str, float]
    by_pipeline: dict[str, float]  # "idle" for idle time
    startup_usd: float
    idle_usd: float
    total_usd: float


def daily(session: Session, days: int = 14, usd_per_s: float | None = None) -> list[Day]:
    """Spend per UTC day (oldest first) per endpoint and per pipeline, with the start-up and
    idle shares, for the dashboard's chart."""
    start = datetime.combine(utcnow().date() - timedelta(days=days - 1), datetime.min.time(), UTC)
    rows = session.scalars(
        select(BilledSeconds).where(BilledSeconds.worker_started_at >= start)
    ).all()
    endpoints: dict[date, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    pipelines: dict[date, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    startup: dict[date, float] = defaultdict(float)
    idle: dict[date, float] = defaultdict(float)
    for row in rows:
        started = row.worker_started_at
        day = (started if started.tzinfo else started.replace(tzinfo=UTC)).date()
        seconds = row.startup_s + row.run_s + row.idle_s
        per_s = row.usd / seconds if seconds else 0.0
        endpoints[day][row.endpoint] += row.usd
        pipelines[day][IDLE if row.charged_to == IDLE else row.pipeline or "other"] += row.usd
        startup[day] += row.startup_s * per_s
        idle[day] += row.idle_s * per_s
    out = []
    for offset in range(days):
        day = start.date() + timedelta(days=offset)
        out.append(
            Day(
                day,
                dict(endpoints[day]),
                dict(pipelines[day]),
                startup[day],
                idle[day],
                sum(endpoints[day].values()),
            )
        )
    return out
