"""``cost``: what a scale-to-zero endpoint costs per month against an always-on worker.

Billing model (RunPod flex workers): a worker is billed from the moment it starts (cold
start included) until it stops, which is ``idle_timeout`` seconds after its last job.
Two ways to describe the load:

* a job trace (CSV with ``arrival_s`` and ``duration_s`` columns): replayed exactly, with
  up to ``workers_max`` workers; a job waits for a free worker when all are busy;
* an arrival rate and a job length: Poisson arrivals, one worker, low utilisation. After
  each job the worker idles ``min(gap, T)`` where the gap to the next arrival is
  exponential, so a job costs ``L + (1 - e^-λT)/λ + e^-λT * C`` GPU-seconds and a fraction
  ``e^-λT`` of jobs wait for a cold start.

A month is 730 hours. ``best_idle_timeout`` picks the cheapest idle timeout whose share of
cold-started jobs stays within the budget.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

MONTH_S = 730 * 3600
CANDIDATE_TIMEOUTS = (
    1,
    2,
    3,
    5,
    8,
    10,
    15,
    20,
    30,
    45,
    60,
    90,
    120,
    180,
    240,
    300,
    420,
    600,
    900,
    1200,
    1800,
    2700,
    3600,
)


@dataclass
class Estimate:
    idle_timeout_s: float
    jobs_per_month: float
    billed_s_per_month: float
    cold_starts_per_month: float
    cold_fraction: float
    dollars_per_month: float
    always_on_dollars_per_month: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


class TraceError(ValueError):
    """The trace CSV is unreadable or lacks arrival_s / duration_s (exit code 2)."""


def read_trace(path: str | Path) -> list[tuple[float, float]]:
    """``[(arrival_s, duration_s)]`` sorted by arrival, from a CSV with those two columns."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror}") from None
    jobs = []
    for n, row in enumerate(rows, start=2):
        try:
            arrival, duration = float(row["arrival_s"]), float(row["duration_s"])
        except KeyError:
            raise TraceError(f"{path}: needs columns arrival_s,duration_s") from None
        except (TypeError, ValueError):
            raise TraceError(f"{path}:{n}: arrival_s and duration_s must be numbers") from None
        if arrival < 0 or duration < 0:
            raise TraceError(f"{path}:{n}: negative time")
        jobs.append((arrival, duration))
    if not jobs:
        raise TraceError(f"{path}: no jobs in the trace")
    return sorted(jobs)


@dataclass
class Replay:
    """What replaying jobs through the scaler model bills, in GPU-seconds."""

    jobs: int = 0
    cold_starts: int = 0
    flex_s: float = 0.0  # flex workers, start to stop (cold starts and idle included)
    start_s: float = 0.0  # of which cold starts
    run_s: float = 0.0  # the jobs themselves (on flex or active workers)
    flex_run_s: float = 0.0  # of which on flex workers
    active_s: float = 0.0  # active workers, billed the whole window

    @property
    def cold_fraction(self) -> float:
        return self.cold_starts / self.jobs if self.jobs else 0.0


def simulate(
    jobs: Iterable[tuple[float, float]],
    idle_timeout_s: float,
    cold_start_s: float,
    workers_max: int = 1,
    active: int = 0,
    window: tuple[float, float] | None = None,
) -> Replay:
    """Replay ``(arrival, duration)`` pairs, sorted by arrival, through a simple scaler.

    ``active`` workers (RunPod's workersMin) run the whole ``window`` and never cold-start;
    up to ``workers_max - active`` flex workers start when a job finds every worker busy,
    take ``cold_start_s`` to start, and stop ``idle_timeout_s`` after their last job. A job
    goes to a free active worker first, then to the warm flex worker freed last; when none
    is free and no worker may start, it waits for the first to free up."""
    jobs = list(jobs)
    flex_cap = max(workers_max - active, 0)
    if active < 1 and flex_cap < 1:
        raise ValueError("no worker may ever run: workers_max must be at least 1")
    start, end = window or ((jobs[0][0], jobs[-1][0]) if jobs else (0.0, 0.0))
    always = [[start, start] for _ in range(active)]  # [session_start, free_at]
    flex: list[list[float]] = []
    out = Replay()
    for arrival, duration in jobs:
        out.jobs += 1
        out.run_s += duration
        alive = []
        for w in flex:
            if w[1] + idle_timeout_s < arrival:
                out.flex_s += w[1] + idle_timeout_s - w[0]
            else:
                alive.append(w)
        flex = alive
        free_active = [w for w in always if w[1] <= arrival]
        free_flex = [w for w in flex if w[1] <= arrival]
        if free_active:
            worker, begins = free_active[0], arrival
        elif free_flex:
            worker, begins = max(free_flex, key=lambda w: w[1]), arrival
        elif len(flex) < flex_cap:
            worker = [arrival, arrival]
            flex.append(worker)
            begins = arrival + cold_start_s
            out.cold_starts += 1
            out.start_s += cold_start_s
        else:
            worker = min(always + flex, key=lambda w: w[1])
            begins = worker[1]
        worker[1] = begins + duration
        if worker in flex:
            out.flex_run_s += duration
    out.flex_s += sum(w[1] + idle_timeout_s - w[0] for w in flex)
    last = max([end, *(w[1] for w in always)])
    out.active_s = active * (last - start)
    return out


def trace_estimate(
    jobs: list[tuple[float, float]],
    idle_timeout_s: float,
    cold_start_s: float,
    price_per_s: float,
    *,
    workers_max: int = 1,
    trace_days: float | None = None,
    active_price_per_s: float | None = None,
) -> Estimate:
    """Monthly figures from a trace covering ``trace_days`` (default: whole days spanned)."""
    span = jobs[-1][0] - jobs[0][0]
    days = trace_days or max(1, math.ceil(span / 86400))
    scale = MONTH_S / (days * 86400)
    replay = simulate(jobs, idle_timeout_s, cold_start_s, workers_max)
    billed, cold, count = replay.flex_s, replay.cold_starts, replay.jobs
    return Estimate(
        idle_timeout_s=idle_timeout_s,
        jobs_per_month=count * scale,
        billed_s_per_month=billed * scale,
        cold_starts_per_month=cold * scale,
        cold_fraction=cold / count,
        dollars_per_month=billed * scale * price_per_s,
        always_on_dollars_per_month=MONTH_S * (active_price_per_s or price_per_s),
    )


def rate_estimate(
    jobs_per_hour: float,
    job_s: float,
    idle_timeout_s: float,
    cold_start_s: float,
    price_per_s: float,
    active_price_per_s: float | None = None,
) -> Estimate:
    """Monthly figures for Poisson arrivals at ``jobs_per_hour`` of ``job_s`` seconds each;
    the always-on comparison is billed at ``active_price_per_s`` (default: the flex price)."""
    rate = jobs_per_hour / 3600
    cold_fraction = math.exp(-rate * idle_timeout_s)
    idle = (1 - cold_fraction) / rate
    per_job = job_s + idle + cold_fraction * cold_start_s
    jobs = jobs_per_hour * 730
    return Estimate(
        idle_timeout_s=idle_timeout_s,
        jobs_per_month=jobs,
        billed_s_per_month=jobs * per_job,
        cold_starts_per_month=jobs * cold_fraction,
        cold_fraction=cold_fraction,
        dollars_per_month=jobs * per_job * price_per_s,
        always_on_dollars_per_month=MONTH_S * (active_price_per_s or price_per_s),
    )


def best_idle_timeout(
    estimate: Callable[[float], Estimate],
    max_cold_fraction: float,
    candidates: Iterable[float] = CANDIDATE_TIMEOUTS,
) -> tuple[Estimate, bool]:
    """Cheapest estimate within the cold-start budget; ``(least-cold estimate, False)`` if
    no idle timeout meets it (then only an always-on worker can)."""
    estimates = [estimate(t) for t in candidates]
    within = [e for e in estimates if e.cold_fraction <= max_cold_fraction + 1e-12]
    if within:
        return min(within, key=lambda e: (e.dollars_per_month, e.idle_timeout_s)), True
    return min(estimates, key=lambda e: (e.cold_fraction, e.dollars_per_month)), False


def advice(current: Estimate, best: Estimate, within: bool) -> str:
    """One sentence: keep scaling to zero (at which idle timeout), or run a worker always on
    (``workers_min = 1``) because that is cheaper or the only way to meet the budget."""
    always = current.always_on_dollars_per_month
    if always <= best.dollars_per_month:
        return (
            f"an always-on worker (workers_min = 1) is the cheaper choice: "
            f"${always:,.2f}/month with no cold starts, against ${best.dollars_per_month:,.2f} "
            f"for the cheapest idle timeout ({best.idle_timeout_s:g} s) and "
            f"${current.dollars_per_month:,.2f} for yours"
        )
    if not within:
        return (
            "no idle timeout meets the cold-start budget; only an always-on worker "
            f"(workers_min = 1, ${always:,.2f}/month) does, or raise --cold-budget"
        )
    if always <= current.dollars_per_month:
        return (
            f"your idle timeout costs more than an always-on worker (${always:,.2f}/month); "
            f"set idle timeout {best.idle_timeout_s:g} s (${best.dollars_per_month:,.2f}/month)"
        )
    return (
        f"scale to zero with idle timeout {best.idle_timeout_s:g} s: "
        f"${best.dollars_per_month:,.2f}/month against ${always:,.2f} always on"
    )


# deploy cost --history: the grid of settings it prices, and what each would have billed.
IDLE_GRID = (1, 2, 3, 5, 10, 15, 20, 30, 45, 60)
ACTIVE_GRID = (0, 1, 2)


@dataclass
class Bill:
    """What one (idle timeout, active workers) setting would have billed for past jobs."""

    idle_timeout_s: float
    active: int
    jobs: int
    dollars: float
    dollars_per_month: float
    cold_fraction: float  # share of jobs that waited for a worker to start
    start_share: float  # share of the bill spent starting workers
    idle_share: float  # share of the bill spent on workers with no job

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class PastLoad:
    """Past jobs as ``(submitted, run seconds)`` over ``window`` (epoch seconds), and what
    every setting of the grid is priced and bounded with."""

    jobs: list[tuple[float, float]]
    window: tuple[float, float]
    cold_start_s: float
    workers_max: int
    flex_price: float
    active_price: float


def bill(load: PastLoad, idle_timeout_s: float, active: int) -> Bill:
    """Replay the jobs with one setting and price it."""
    r = simulate(
        load.jobs,
        idle_timeout_s,
        load.cold_start_s,
        max(load.workers_max, active),
        active,
        load.window,
    )
    flex_idle = r.flex_s - r.start_s - r.flex_run_s
    active_idle = r.active_s - (r.run_s - r.flex_run_s)
    dollars = r.flex_s * load.flex_price + r.active_s * load.active_price
    idle_dollars = flex_idle * load.flex_price + active_idle * load.active_price
    days = max(load.window[1] - load.window[0], 1.0) / 86400
    return Bill(
        idle_timeout_s=idle_timeout_s,
        active=active,
        jobs=r.jobs,
        dollars=dollars,
        dollars_per_month=dollars * MONTH_S / (days * 86400),
        cold_fraction=r.cold_fraction,
        start_share=r.start_s * load.flex_price / dollars if dollars else 0.0,
        idle_share=idle_dollars / dollars if dollars else 0.0,
    )


def bill_grid(
    load: PastLoad,
    idle_timeouts: Iterable[float] = IDLE_GRID,
    actives: Iterable[int] = ACTIVE_GRID,
) -> list[Bill]:
    """Every (active workers, idle timeout) setting of the grid, priced."""
    return [bill(load, t, a) for a in actives for t in idle_timeouts]
