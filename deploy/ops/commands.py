"""The handlers behind ``python -m deploy plan|apply|destroy|check|doctor|logs|workers|purge|
cancel|gpus|sizes|cost``. Each returns an exit code: 0 ok, 1 findings or problems, 2 usage
or API error. Every handler gets the operator's settings (``deploy.ops.settings``, the one
reader of the environment); the API key comes from ``RUNPOD_API_KEY`` only and is never printed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from deploy.ops import check as checks
from deploy.ops import cost as costs
from deploy.ops import doctor as doc
from deploy.ops import plan as plans
from deploy.ops.output import FINDINGS, OK, USAGE, emit_json, err, out, progress, table
from deploy.ops.settings import OpsSettings
from deploy.ops.sizes import (
    SizeLookupError,
    model_size,
    recommended_disk_gb,
    recommended_volume_gb,
)
from deploy.ops.spec import REPO_ID, EndpointSpec, load_spec
from deploy.runpod.jobapi import JobAPI, JobAPIError, JobNotFound, WorkerNotFound
from deploy.runpod.management import ManagementAPI, ManagementError
from deploy.runpod.pools import POOLS
from deploy.runpod.vocabulary import is_runpod, worker_row


class UsageError(ValueError):
    """Bad flags or missing configuration (exit code 2)."""


# ---- spec, check, sizes ------------------------------------------------------------------


def _size_models(spec: EndpointSpec, offline: bool, settings: OpsSettings) -> checks.CheckContext:
    ctx = checks.CheckContext(environ=dict(settings.environ))
    if not offline and spec.volume and settings.runpod_api_key:
        progress("reading GPU stock from the RunPod catalog")
        try:
            ctx.catalog = _management(settings).gpu_catalog(spec.gpu_count)
        except ManagementError as exc:
            progress(f"GPU stock not checked: {exc}")
    for model in spec.models:
        if offline:
            ctx.size_errors[model.repo] = "not looked up (--offline)"
            continue
        progress(f"sizing {model.repo}@{model.revision} from the hub")
        try:
            ctx.model_sizes[model.repo] = _model_size(
                settings, model.repo, model.revision, model.files
            )
        except SizeLookupError as exc:
            ctx.size_errors[model.repo] = str(exc)
    return ctx


def _model_size(settings: OpsSettings, repo: str, revision: str, files: tuple[str, ...]):
    return model_size(
        repo, revision, files=files, hub=settings.hf_endpoint, token=settings.hf_token
    )


def _print_findings(findings: list[checks.Finding], ok_text: str) -> None:
    if not findings:
        out(ok_text)
        return
    for f in findings:
        out(f"[{f.severity}] {f.rule}: {f.message}")
        if f.why:
            out(f"    why: {f.why}")
        out(f"    fix: {f.fix}")


def cmd_check(args: argparse.Namespace, settings: OpsSettings) -> int:
    if args.list:
        rows = [(r.id, r.severity, r.title) for r in checks.RULES]
        if args.json:
            emit_json(
                [
                    {"id": r.id, "severity": r.severity, "title": r.title, "why": r.why}
                    for r in checks.RULES
                ]
            )
        else:
            out(table(["rule", "severity", "what it checks"], rows))
        return OK
    spec = load_spec(args.spec)
    findings = checks.run_checks(spec, _size_models(spec, args.offline, settings))
    if args.json:
        emit_json({"spec": str(spec.path), "findings": [f.to_dict() for f in findings]})
    else:
        _print_findings(findings, f"{spec.path}: all {len(checks.RULES)} checks pass")
    return FINDINGS if findings else OK


def cmd_sizes(args: argparse.Namespace, settings: OpsSettings) -> int:
    spec = load_spec(args.spec) if not args.repos else None
    if spec is not None:
        models = [(m.repo, m.revision, m.files) for m in spec.models]
    else:
        models = [
            (repo, rev or "main", ()) for repo, _, rev in (r.partition("@") for r in args.repos)
        ]
    for repo, _, _ in models:
        if not REPO_ID.fullmatch(repo):
            raise UsageError(f"{repo!r} is not a hub repo id (org/name)")
    if not models:
        raise UsageError("no models: list repo ids, or add [[models]] to the spec")
    sizes = []
    for repo, revision, files in models:
        progress(f"sizing {repo}@{revision}")
        try:
            sizes.append(_model_size(settings, repo, revision, files))
        except SizeLookupError as exc:
            err(f"error: {exc}")
            return USAGE
    total_gb = sum(s.gb for s in sizes)
    overhead = spec.download_overhead if spec else 2.0
    image_gb = spec.image_compressed_gb if spec else args.image_gb
    result = {
        "models": [
            {
                "repo": s.repo,
                "revision": s.revision,
                "gb": round(s.gb, 2),
                "files": s.files,
                "largest": s.largest,
            }
            for s in sizes
        ],
        "total_gb": round(total_gb, 2),
        "recommended_volume_gb": recommended_volume_gb(total_gb, overhead),
        "recommended_disk_gb_with_volume": recommended_disk_gb(image_gb, total_gb, True),
        "recommended_disk_gb_without_volume": recommended_disk_gb(
            image_gb or 0, total_gb * overhead, False
        ),
    }
    if args.json:
        emit_json(result)
        return OK
    out(
        table(
            ["model", "revision", "files", "size GB"],
            [(s.repo, s.revision, s.files, f"{s.gb:.2f}") for s in sizes],
        )
    )
    out(f"\ntotal: {total_gb:.2f} GB (real sizes from {settings.hf_endpoint})")
    out(
        f"network volume: {result['recommended_volume_gb']} GB "
        f"(models x{overhead:g} download overhead + 5 GB)"
    )
    if image_gb is not None:
        out(
            f"container disk with a volume: {result['recommended_disk_gb_with_volume']} GB; "
            f"without: {result['recommended_disk_gb_without_volume']} GB"
        )
    else:
        out("container disk: set image_compressed_gb (or --image-gb) to size it")
    return OK


# ---- plan, apply, destroy ---------------------------------------------------------------


def _management(settings: OpsSettings) -> ManagementAPI:
    return ManagementAPI(
        settings.api_key(), settings.runpod_rest_url or None, settings.runpod_graphql_url or None
    )


def _print_plan(plan: plans.Plan) -> None:
    rows = []
    for c in plan.changes:
        rows.append((c.kind, c.name, c.action, c.id, c.note))
    out(table(["resource", "name", "action", "id", "note"], rows))
    for c in plan.changes:
        if c.fields:
            out(f"\n{c.kind} {c.name}:")
            out(table(["field", "now", "spec"], c.fields))


def cmd_plan(args: argparse.Namespace, settings: OpsSettings) -> int:
    spec = load_spec(args.spec)
    plan = plans.make_plan(_management(settings), spec, settings.environ)
    if args.json:
        emit_json({"changes": [c.to_dict() for c in plan.changes], "hasChanges": plan.has_changes})
    else:
        _print_plan(plan)
        out("\nnothing to change" if not plan.has_changes else "\nrun `python -m deploy apply`")
    return FINDINGS if plan.has_changes else OK


def cmd_apply(args: argparse.Namespace, settings: OpsSettings) -> int:
    spec = load_spec(args.spec)
    findings = checks.run_checks(spec, _size_models(spec, args.offline, settings))
    errors = [f for f in findings if f.severity == checks.ERROR]
    if errors:
        _print_findings(errors, "")
        out(f"\napply refused: {len(errors)} check error(s); fix the spec and rerun")
        return FINDINGS
    for f in findings:
        progress(f"warning {f.rule}: {f.message}")
    api = _management(settings)
    if args.recreate:
        balance = _balance(api)
        if balance is not None and balance < 0:
            out(
                f"apply --recreate refused: the balance is ${balance:.2f}; a new endpoint would "
                "answer Not Found too. Add funds first."
            )
            return FINDINGS
    plan = plans.make_plan(api, spec, settings.environ)
    try:
        if args.recreate:
            result = plans.recreate(api, plan, progress)
        else:
            if not plan.has_changes:
                result = {"unchanged": True, "endpointId": plan.endpoint and plan.endpoint["id"]}
                _report_apply(args, plan, result)
                return OK
            result = plans.apply_plan(api, plan, progress, release_wait_s=args.release_wait)
    except plans.ApplyError as exc:
        out(f"apply failed: {exc}")
        return FINDINGS
    _report_apply(args, plan, result)
    return OK


def _balance(api: ManagementAPI) -> float | None:
    try:
        value = api.balance().get("clientBalance")
    except ManagementError as exc:
        progress(f"balance not checked: {exc}")
        return None
    return value if isinstance(value, int | float) else None


def _report_apply(args: argparse.Namespace, plan: plans.Plan, result: dict) -> None:
    if args.json:
        emit_json({"changes": [c.to_dict() for c in plan.changes], **result})
        return
    if result.get("unchanged"):
        out(f"endpoint {result['endpointId']} already matches {plan.spec.path}: nothing to do")
        return
    out(f"endpoint {result['endpointId']} is up to date with {plan.spec.path}")
    if result.get("release"):
        rel = result["release"]
        out(f"release v{rel['version']} verified ({', '.join(rel['diff']) or 'no diff'})")
    if result.get("replaced"):
        out(
            f"replaced endpoint {result['replaced']}: set RUNPOD_ENDPOINT_ID="
            f"{result['endpointId']} everywhere (web app, Celery) and restart them"
        )
    elif result.get("created"):
        out(f"new endpoint: set RUNPOD_ENDPOINT_ID={result['endpointId']}")


def cmd_destroy(args: argparse.Namespace, settings: OpsSettings) -> int:
    spec = load_spec(args.spec)
    if not args.yes:
        raise UsageError(
            f"destroy deletes endpoint {spec.name!r} and its template"
            + (" and the network volume with its data" if args.include_volume else "")
            + ": rerun with --yes"
        )
    done = plans.destroy(_management(settings), spec, progress, include_volume=args.include_volume)
    if args.json:
        emit_json({"deleted": [c.to_dict() for c in done]})
    elif done:
        out(table(["resource", "name", "id"], [(c.kind, c.name, c.id) for c in done]))
    else:
        out("nothing to delete")
    if spec.volume and not args.include_volume:
        out(
            f"kept network volume {spec.volume.name} (it is billed while it exists; "
            "--include-volume deletes it)"
        )
    return OK


# ---- the endpoint's job API: doctor, logs, workers, purge, cancel -------------------------


@dataclass
class Target:
    jobapi: JobAPI
    api_key: str
    local: bool
    management: ManagementAPI | None


def split_endpoint_url(url: str) -> tuple[str, str | None]:
    """``.../v2`` → (it, None); ``.../v2/<endpoint id>`` (what `make run` prints) → (``.../v2``,
    the id), so either form of the URL can be given to --local."""
    parts = urlsplit(url.rstrip("/"))
    head, _, last = parts.path.rpartition("/")
    if head.endswith("/v2") and last:
        return url.rstrip("/")[: -len(last) - 1], last
    return url.rstrip("/"), None


def _target(args: argparse.Namespace, settings: OpsSettings) -> Target:
    api_key = settings.api_key()
    base = args.local or settings.runpod_endpoint_base_url
    base, named_id = split_endpoint_url(base)
    local = bool(args.local) or not is_runpod(base, settings.runpod_rest_url)
    endpoint_id = args.endpoint_id or named_id or settings.runpod_endpoint_id
    management = None if local else _management(settings)
    if not endpoint_id:
        if local:
            endpoint_id = "local"
        else:
            spec = load_spec(args.spec)
            found = [e for e in management.list_endpoints() if e.get("name") == spec.name]
            if not found:
                raise UsageError(
                    f"no endpoint named {spec.name!r}: set RUNPOD_ENDPOINT_ID or "
                    "run `python -m deploy apply`"
                )
            endpoint_id = found[0]["id"]
    return Target(JobAPI(endpoint_id, api_key, base), api_key, local, management)


def cmd_doctor(args: argparse.Namespace, settings: OpsSettings) -> int:
    target = _target(args, settings)
    progress(
        f"reading health, workers, logs{'' if target.local else ', releases, balance'} "
        f"of {target.jobapi.endpoint_id}"
    )
    if target.local:
        facts = doc.gather_local(target.jobapi, args.lines)
    else:
        facts = doc.gather_runpod(target.management, target.jobapi, args.lines)
    facts.startup_grace_s = args.startup_grace
    findings = doc.diagnose(facts)
    problems = [f for f in findings if f.severity != doc.INFO]
    if args.json:
        emit_json(
            {
                "endpointId": facts.endpoint_id,
                "target": facts.target,
                "health": facts.health,
                "summary": facts.summary,
                "balance": facts.balance,
                "findings": [f.to_dict() for f in findings],
            }
        )
    else:
        jobs = (facts.health or {}).get("jobs") or {}
        out(f"endpoint {facts.endpoint_id} ({facts.target})")
        if facts.health:
            out(
                table(
                    ["inQueue", "inProgress", "completed", "failed", "workers"],
                    [
                        (
                            jobs.get("inQueue"),
                            jobs.get("inProgress"),
                            jobs.get("completed"),
                            jobs.get("failed"),
                            ", ".join(
                                f"{k} {v}"
                                for k, v in (
                                    facts.summary or facts.health.get("workers") or {}
                                ).items()
                                if v
                            ),
                        )
                    ],
                )
            )
        if facts.balance:
            out(
                f"balance ${facts.balance.get('clientBalance')}, spending "
                f"${facts.balance.get('currentSpendPerHr')}/h"
            )
        out("")
        _print_findings(findings, "no problems found")
    return FINDINGS if problems else OK


def _worker_rows(target: Target) -> tuple[list[dict], dict]:
    if target.local:
        data = target.jobapi.workers()
        rows = [
            {
                "id": w["id"],
                "state": w["state"] if w.get("exitedAt") is None else "exited",
                "exitCode": w.get("exitCode"),
                "meaning": w.get("exitMeaning") or "",
                "jobsDone": w.get("jobsDone"),
                "currentJobs": len(w.get("currentJobs") or []),
            }
            for w in data.get("workers") or []
        ]
        return rows, data.get("summary") or {}
    data = target.management.list_workers(target.jobapi.endpoint_id)
    rows = [worker_row(w) for w in data.get("workers") or []]
    return rows, data.get("summary") or {}


def cmd_workers(args: argparse.Namespace, settings: OpsSettings) -> int:
    target = _target(args, settings)
    rows, summary = _worker_rows(target)
    if args.json:
        emit_json({"workers": rows, "summary": summary})
        return OK
    if rows:
        headers = list(rows[0])
        out(table(headers, [[r.get(h) for h in headers] for r in rows]))
    else:
        out("no workers")
    out("\n" + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return OK


def cmd_logs(args: argparse.Namespace, settings: OpsSettings) -> int:
    target = _target(args, settings)
    worker_id = args.worker
    if not worker_id:
        rows, _ = _worker_rows(target)
        if not rows:
            out("no workers to read logs from")
            return FINDINGS
        # The most telling worker: a crashed or unhealthy one, else the newest.
        bad = [r for r in rows if r["state"] in ("exited", "unhealthy") and r.get("exitCode")]
        worker_id = (bad or rows)[-1]["id"]
    if target.local:
        try:
            lines = target.jobapi.worker_logs(worker_id, args.lines)
        except WorkerNotFound:
            out(f"no worker {worker_id}")
            return USAGE
    else:
        lines = target.management.worker_logs(target.jobapi.endpoint_id, worker_id, args.lines)
    if args.json:
        emit_json({"workerId": worker_id, "lines": lines})
    else:
        out(f"worker {worker_id}, last {len(lines)} line(s):")
        for line in lines:
            out(f"  {line}")
    return OK


def cmd_purge(args: argparse.Namespace, settings: OpsSettings) -> int:
    target = _target(args, settings)
    result = target.jobapi.purge_queue()
    if args.json:
        emit_json(result)
    else:
        out(
            f"removed {result.get('removed', 0)} queued job(s) from "
            f"{target.jobapi.endpoint_id}; running jobs are untouched"
        )
    return OK


def cmd_cancel(args: argparse.Namespace, settings: OpsSettings) -> int:
    target = _target(args, settings)
    results, missing = [], []
    for job_id in args.job_ids:
        try:
            results.append(target.jobapi.cancel(job_id))
        except JobNotFound:
            missing.append(job_id)
    if args.json:
        emit_json({"cancelled": results, "notFound": missing})
    else:
        for r in results:
            out(f"{r.get('id')}: {r.get('status')}")
        for job_id in missing:
            out(f"{job_id}: request does not exist (finished long ago, purged or wrong id)")
    return FINDINGS if missing else OK


# ---- catalog and cost -----------------------------------------------------------------


def cmd_gpus(args: argparse.Namespace, settings: OpsSettings) -> int:
    gpus = _management(settings).gpu_catalog(args.count)
    pools: dict[str, dict] = {}
    for gpu in gpus:
        if not gpu.get("pool"):
            continue
        entry = pools.setdefault(
            gpu["pool"],
            {
                "pool": gpu["pool"],
                "memoryGb": gpu["memory"],
                "gpus": [],
                "pricePerHour": None,
                "availability": "NONE",
                "dataCenters": set(),
            },
        )
        entry["gpus"].append(gpu["name"])
        price = (gpu.get("price") or {}).get("serverless")
        if price is not None:
            entry["pricePerHour"] = max(entry["pricePerHour"] or 0, price)
        levels = ["NONE", "LOW", "MEDIUM", "HIGH"]
        level = gpu.get("availability") or "NONE"
        if levels.index(level) > levels.index(entry["availability"]):
            entry["availability"] = level
        entry["dataCenters"].update(
            d["id"] for d in gpu.get("dataCenters") or [] if d.get("availability") != "NONE"
        )
    rows = sorted(pools.values(), key=lambda p: (p["memoryGb"], p["pool"]))
    if args.tier:
        rows = [r for r in rows if r["pool"] in args.tier]
    for r in rows:
        r["dataCenters"] = sorted(r["dataCenters"])
        r["pricePerSecond"] = round(r["pricePerHour"] / 3600, 6) if r["pricePerHour"] else None
    if args.json:
        emit_json({"pools": rows})
        return OK
    out(
        table(
            ["pool", "GB", "GPUs", "$/h", "$/s", "serverless stock", "datacenters with stock"],
            [
                (
                    r["pool"],
                    r["memoryGb"],
                    ", ".join(r["gpus"]),
                    r["pricePerHour"],
                    r["pricePerSecond"],
                    r["availability"],
                    ", ".join(r["dataCenters"]) or "-",
                )
                for r in rows
            ],
        )
    )
    return OK


def cmd_cost(args: argparse.Namespace, settings: OpsSettings) -> int:
    if not 0 <= args.cold_budget <= 1:
        raise UsageError("--cold-budget is a share of jobs between 0 and 1 (0.1 = 10 %)")
    if args.idle_timeout <= 0 or args.cold_start_s < 0 or args.workers_max < 1:
        raise UsageError("--idle-timeout must be > 0, --cold-start-s >= 0, --workers-max >= 1")
    if (args.jobs_per_hour is not None and args.jobs_per_hour <= 0) or (
        args.job_s is not None and args.job_s <= 0
    ):
        raise UsageError("--jobs-per-hour and --job-s must be positive")
    price = args.price_per_s
    if price is None:
        pool = POOLS.get(args.tier)
        if pool is None or pool.price_per_s is None:
            raise UsageError(f"no list price for tier {args.tier!r}: pass --price-per-s")
        price = pool.price_per_s
    price *= args.gpu_count
    if args.trace:
        jobs = costs.read_trace(args.trace)

        def estimate(t: float) -> costs.Estimate:
            return costs.trace_estimate(
                jobs,
                t,
                args.cold_start_s,
                price,
                workers_max=args.workers_max,
                trace_days=args.trace_days,
            )
    elif args.jobs_per_hour and args.job_s:

        def estimate(t: float) -> costs.Estimate:
            return costs.rate_estimate(args.jobs_per_hour, args.job_s, t, args.cold_start_s, price)
    else:
        raise UsageError("give --trace CSV, or both --jobs-per-hour and --job-s")
    now = estimate(args.idle_timeout)
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
        f"(730 h at ${price:.5f}/s)"
    )
    if not within:
        out(
            f"no idle timeout keeps cold starts under {100 * args.cold_budget:.0f}% of jobs: "
            "only workers_min >= 1 (always-on) does"
        )
    out(f"advice: {result['advice']}")
    return OK


def run(handler):
    """Wrap a handler so configuration and API errors print one line and exit 2."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return handler(args, OpsSettings.from_env())
        except (
            ManagementError,
            JobAPIError,
            UsageError,
            ValueError,
            requests.RequestException,
        ) as exc:
            err(f"error: {exc}")
            return USAGE

    return wrapped
