"""``python -m deploy cost``: what past jobs would have billed at each idle timeout and number
of active workers (``--history``, ``--history-db``), or a month's cost from a trace or an
arrival rate against an always-on worker. Prices come from the price book
(``deploy.runpod.prices``); the models are in ``deploy.ops.cost``, the history readers in
``deploy.ops.history``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any

from deploy.ops import cost as costs
from deploy.ops import fleet as fleets
from deploy.ops.commands import UsageError, chosen, each
from deploy.ops.history import PastJob, measured_cold_start_s, read_csv, read_database
from deploy.ops.output import OK, emit_json, out, table
from deploy.ops.settings import OpsSettings
from deploy.ops.spec import EndpointSpec
from deploy.runpod.prices import READ_ON as PRICES_READ_ON
from deploy.runpod.prices import PriceError, price_per_second

DEFAULT_COST_TIER = "ADA_48_PRO"
DEFAULT_HISTORY_DAYS = 7.0


@dataclass
class CostBasis:
    """What a cost estimate is priced and scaled with: flags first, then the endpoint's spec,
    then the defaults (one ADA_48_PRO worker, idle timeout 5 s, cold start 30 s)."""

    name: str | None
    tiers: list[str]
    gpu_count: int
    idle_timeout_s: float
    workers_max: int
    workers_min: int
    flex: float
    active: float
    spec: EndpointSpec | None = None


def _cost_specs(
    args: argparse.Namespace, settings: OpsSettings
) -> tuple[fleets.Fleet | None, list[EndpointSpec | None]]:
    """The endpoints to price; none when tiers or a price are given without one."""
    given = args.endpoint or args.all or args.spec
    if not given and (args.tier or args.price_per_s is not None):
        return None, [None]
    if not given and not any(settings.endpoints_dir.glob("*.toml")):
        return None, [None]  # no specs here: price the default tier
    fleet, specs = chosen(args, settings)
    return fleet, list(specs)


def _cost_basis(
    args: argparse.Namespace, settings: OpsSettings, spec: EndpointSpec | None
) -> CostBasis:
    tiers = [args.tier] if args.tier else (spec.gpu_tiers if spec else [DEFAULT_COST_TIER])
    count = args.gpu_count or (spec.gpu_count if spec else 1)
    pricing = spec.pricing if spec else None

    def price(active: bool) -> float:
        override = args.price_per_s
        if override is None and pricing is not None:
            override = pricing.active_per_s if active else pricing.flex_per_s
            if active and override is None:
                override = pricing.flex_per_s
        if override is None:
            override = settings.gpu_price_per_second
        try:
            return price_per_second(tiers, active, override, gpu_count=count)
        except PriceError as exc:
            raise UsageError(f"{exc} (or pass --price-per-s)") from None

    return CostBasis(
        name=spec.key if spec else None,
        tiers=tiers,
        gpu_count=count,
        idle_timeout_s=args.idle_timeout or (spec.idle_timeout_s if spec else 5.0),
        workers_max=args.workers_max or (spec.workers_max if spec else 1),
        workers_min=spec.workers_min if spec else 0,
        flex=price(False),
        active=price(True),
        spec=spec,
    )


def cmd_cost(args: argparse.Namespace, settings: OpsSettings) -> int:
    if not 0 <= args.cold_budget <= 1:
        raise UsageError("--cold-budget is a share of jobs between 0 and 1 (0.1 = 10 %)")
    if (
        (args.idle_timeout is not None and args.idle_timeout <= 0)
        or (args.cold_start_s is not None and args.cold_start_s < 0)
        or (args.workers_max is not None and args.workers_max < 1)
    ):
        raise UsageError("--idle-timeout must be > 0, --cold-start-s >= 0, --workers-max >= 1")
    if (args.jobs_per_hour is not None and args.jobs_per_hour <= 0) or (
        args.job_s is not None and args.job_s <= 0
    ):
        raise UsageError("--jobs-per-hour and --job-s must be positive")
    if args.days is not None and args.days <= 0:
        raise UsageError("--days must be a positive number of days")
    fleet, specs = _cost_specs(args, settings)
    if args.history or args.history_db:
        jobs = _history(args, settings)
        items = [_CostItem(_cost_basis(args, settings, spec)) for spec in specs]
        return each(args, items, lambda item: _history_one(args, fleet, item, jobs))
    if len(specs) > 1:
        raise UsageError("--all prices past jobs only: add --history CSV or --history-db")
    return _model_cost(args, _cost_basis(args, settings, specs[0]))


@dataclass
class _CostItem:
    basis: CostBasis

    @property
    def key(self) -> str:
        return self.basis.name or ",".join(self.basis.tiers)


def _history(args: argparse.Namespace, settings: OpsSettings) -> list[PastJob]:
    if args.history and args.history_db:
        raise UsageError("give --history CSV or --history-db, not both")
    if args.history_db:
        if not settings.database_url:
            raise UsageError("--history-db reads DATABASE_URL, which is not set")
        days = args.days or DEFAULT_HISTORY_DAYS
        return read_database(settings.database_url, time.time() - days * 86400)
    jobs = read_csv(args.history)
    if args.days and jobs:
        jobs = [j for j in jobs if j.submitted_at >= jobs[-1].submitted_at - args.days * 86400]
    return jobs


def _history_window(args: argparse.Namespace, jobs: list[PastJob]) -> tuple[float, float]:
    """The period the bill covers: the last --days up to now (database) or up to the last
    job (CSV); without --days, the whole days the trace spans."""
    if args.history_db:
        end = time.time()
        return end - (args.days or DEFAULT_HISTORY_DAYS) * 86400, end
    end = max(j.finished_at for j in jobs)
    if args.days:
        return end - args.days * 86400, end
    start = jobs[0].submitted_at
    return start, start + max(1, math.ceil((end - start) / 86400)) * 86400


def _jobs_of(fleet: fleets.Fleet | None, basis: CostBasis, jobs: list[PastJob]) -> list[PastJob]:
    """The jobs an endpoint ran: by their endpoint, else by their pipeline's endpoint; with
    one endpoint (or none named), every job."""
    if fleet is None or basis.spec is None or len(fleet.specs) == 1:
        return jobs
    served = set(fleet.served(basis.spec))
    return [
        j for j in jobs if j.endpoint == basis.name or (j.endpoint is None and j.pipeline in served)
    ]


def _history_one(
    args: argparse.Namespace, fleet: fleets.Fleet | None, item: _CostItem, all_jobs: list[PastJob]
) -> tuple[int, dict[str, Any]]:
    basis = item.basis
    jobs = _jobs_of(fleet, basis, all_jobs)
    where = f"endpoint {basis.name}" if basis.name else f"tiers {', '.join(basis.tiers)}"
    if not jobs:
        if not args.json:
            out(f"{where}: no finished jobs in the history")
        return OK, {"endpoint": basis.name, "jobs": 0, "bills": []}
    window = _history_window(args, jobs)
    measured = measured_cold_start_s(jobs)
    cold_start = args.cold_start_s if args.cold_start_s is not None else (measured or 30.0)
    load = costs.PastLoad(
        jobs=[(j.submitted_at, j.run_s) for j in jobs],
        window=window,
        cold_start_s=cold_start,
        workers_max=basis.workers_max,
        flex_price=basis.flex,
        active_price=basis.active,
    )
    bills = costs.bill_grid(load)
    now = costs.bill(load, basis.idle_timeout_s, basis.workers_min)
    cheapest = min(bills, key=lambda b: (b.dollars, b.cold_fraction))
    days = (window[1] - window[0]) / 86400
    data = {
        "endpoint": basis.name,
        "jobs": len(jobs),
        "days": round(days, 3),
        "coldStartS": cold_start,
        "coldStartMeasured": args.cold_start_s is None and measured is not None,
        "prices": {"flex": basis.flex, "active": basis.active, "readOn": PRICES_READ_ON},
        "bills": [b.to_dict() for b in bills],
        "current": now.to_dict(),
        "cheapest": cheapest.to_dict(),
    }
    if args.json:
        return OK, data
    source = "measured median" if data["coldStartMeasured"] else "assumed"
    out(
        f"{where}: {len(jobs)} job(s) over {days:g} day(s); cold start {cold_start:g} s "
        f"({source}); ${basis.flex:.5f}/s flex, ${basis.active:.5f}/s active "
        f"(price book {PRICES_READ_ON}, {basis.gpu_count} GPU per worker)"
    )
    out(
        table(
            [
                "active",
                "idle timeout s",
                f"$ ({days:g} d)",
                "$/month",
                "cold-start jobs",
                "start share",
                "idle share",
            ],
            [
                (
                    b.active,
                    f"{b.idle_timeout_s:g}",
                    f"{b.dollars:,.2f}",
                    f"{b.dollars_per_month:,.2f}",
                    f"{100 * b.cold_fraction:.1f}%",
                    f"{100 * b.start_share:.1f}%",
                    f"{100 * b.idle_share:.1f}%",
                )
                for b in bills
            ],
        )
    )
    out(
        f"now (idle {now.idle_timeout_s:g} s, {now.active} active): ${now.dollars:,.2f}, "
        f"{100 * now.cold_fraction:.1f}% of jobs cold; cheapest: idle "
        f"{cheapest.idle_timeout_s:g} s with {cheapest.active} active, ${cheapest.dollars:,.2f}, "
        f"{100 * cheapest.cold_fraction:.1f}% cold"
    )
    return OK, data


def _model_cost(args: argparse.Namespace, basis: CostBasis) -> int:
    price, cold_start_s = basis.flex, (30.0 if args.cold_start_s is None else args.cold_start_s)
    if args.trace:
        jobs = costs.read_trace(args.trace)

        def estimate(t: float) -> costs.Estimate:
            return costs.trace_estimate(
                jobs,
                t,
                cold_start_s,
                price,
                workers_max=basis.workers_max,
                trace_days=args.trace_days,
                active_price_per_s=basis.active,
            )
    elif args.jobs_per_hour and args.job_s:

        def estimate(t: float) -> costs.Estimate:
            return costs.rate_estimate(
                args.jobs_per_hour, args.job_s, t, cold_start_s, price, basis.active
            )
    else:
        raise UsageError(
            "give --history CSV, --history-db, --trace CSV, or both --jobs-per-hour and --job-s"
        )
    now = estimate(basis.idle_timeout_s)
    best, within = costs.best_idle_timeout(estimate, args.cold_budget)
    result = {
        "pricePerSecond": price,
        "current": now.to_dict(),
        "best": best.to_dict(),
        "bestWithinBudget": within,
        "coldBudget": args.cold_budget,
        "alwaysOnCheaper": now.always_on_dollars_per_month <= best.dollars_per_month,
        "advice": costs.advice(now, best, within),
    }
    if args.json:
        emit_json(result)
        return OK
    rows = []
    for label, e in (("your idle timeout", now), ("cheapest within budget", best)):
        rows.append(
            (
                label,
                f"{e.idle_timeout_s:g}",
                f"{e.jobs_per_month:,.0f}",
                f"{e.billed_s_per_month:,.0f}",
                f"{100 * e.cold_fraction:.1f}%",
                f"${e.dollars_per_month:,.2f}",
            )
        )
    out(
        table(
            ["", "idle timeout s", "jobs/month", "billed GPU-s/month", "cold starts", "$/month"],
            rows,
        )
    )
    out(
        f"\nalways-on worker: ${now.always_on_dollars_per_month:,.2f}/month "
        f"(730 h at the active price, ${basis.active:.5f}/s)"
    )
    if not within:
        out(
            f"no idle timeout keeps cold starts under {100 * args.cold_budget:.0f}% of jobs: "
            "only workers_min >= 1 (always-on) does"
        )
    out(f"advice: {result['advice']}")
    return OK
