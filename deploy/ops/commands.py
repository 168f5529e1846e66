"""The handlers behind ``python -m deploy plan|apply|destroy|check|doctor|logs|workers|purge|
cancel|gpus|sizes|cost``. Each returns an exit code: 0 ok, 1 findings or problems, 2 usage
or API error. Every handler gets the operator's settings (``deploy.ops.settings``, the one
reader of the environment); the API key comes from ``RUNPOD_API_KEY`` only and is never printed.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from deploy.findings import Finding
from deploy.ops import check as checks
from deploy.ops import cost as costs
from deploy.ops import doctor as doc
from deploy.ops import fleet as fleets
from deploy.ops import plan as plans
from deploy.ops.history import PastJob, measured_cold_start_s, read_csv, read_database
from deploy.ops.output import FINDINGS, OK, USAGE, emit_json, err, out, progress, table
from deploy.ops.settings import OpsSettings
from deploy.ops.sizes import (
    SizeLookupError,
    model_size,
    recommended_disk_gb,
    recommended_volume_gb,
)
from deploy.ops.spec import REPO_ID, EndpointSpec, SpecError
from deploy.runpod.jobapi import JobAPI, JobAPIError, JobNotFound, WorkerNotFound
from deploy.runpod.management import ManagementAPI, ManagementError
from deploy.runpod.prices import READ_ON as PRICES_READ_ON
from deploy.runpod.prices import PriceError, price_per_second
from deploy.runpod.vocabulary import is_runpod, worker_row

DEFAULT_COST_TIER = "ADA_48_PRO"
DEFAULT_HISTORY_DAYS = 7.0


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


def _print_findings(findings: list[Finding], ok_text: str, endpoint: str | None = None) -> None:
    if not findings:
        out(ok_text)
        return
    where = f" (endpoint {endpoint})" if endpoint else ""
    for f in findings:
        out(f"[{f.severity}] {f.rule}{where}: {f.message}")
        if f.why:
            out(f"    why: {f.why}")
        out(f"    fix: {f.fix}")


def _fleet(args: argparse.Namespace, settings: OpsSettings) -> fleets.Fleet:
    """The specs this run knows: ``--spec PATH`` alone, else the endpoints folder."""
    if getattr(args, "spec", None):
        return fleets.single(Path(args.spec))
    return fleets.load_fleet(settings.endpoints_dir)


def _chosen(
    args: argparse.Namespace, settings: OpsSettings, *, allow_all: bool = True
) -> tuple[fleets.Fleet, list[EndpointSpec]]:
    fleet = _fleet(args, settings)
    every = bool(getattr(args, "all", False))
    return fleet, fleets.choose(fleet, args.endpoint, every, allow_all=allow_all)


def _each(
    args: argparse.Namespace,
    items: list[Any],
    one: Callable[[Any], tuple[int, dict[str, Any]]],
    extra: dict[str, Any] | None = None,
) -> int:
    """Run ``one`` per endpoint (a spec or a target, each with a ``key``): text under a
    heading per endpoint when there are several; ``--json`` is one endpoint's object, or
    ``{"endpoints": {name: object}}``. The exit code is the worst of them."""
    results, code = {}, OK
    for item in items:
        if len(items) > 1 and not args.json:
            out(f"\n== endpoint {item.key} ==")
        one_code, results[item.key] = one(item)
        code = max(code, one_code)
    if args.json:
        if len(items) == 1 and not extra:
            emit_json(results[items[0].key])
        else:
            emit_json({"endpoints": results, **(extra or {})})
    return code


def cmd_check(args: argparse.Namespace, settings: OpsSettings) -> int:
    if args.list:
        rules = [*checks.RULES, *fleets.FLEET_RULES]
        if args.json:
            emit_json(
                [
                    {"id": r.id, "severity": r.severity, "title": r.title, "why": r.why}
                    for r in rules
                ]
            )
        else:
            out(
                table(
                    ["rule", "severity", "what it checks"],
                    [(r.id, r.severity, r.title) for r in rules],
                )
            )
        return OK
    fleet = _fleet(args, settings)
    # check looks at every endpoint unless told one: the cross-endpoint rules need them all.
    specs = fleets.choose(fleet, args.endpoint, not args.endpoint, allow_all=True)
    across = fleets.fleet_findings(fleet)

    def one(spec: EndpointSpec) -> tuple[int, dict[str, Any]]:
        findings = checks.run_checks(spec, _size_models(spec, args.offline, settings))
        if len(specs) == 1:
            findings = findings + across  # one endpoint: one list, as before several existed
        if not args.json:
            _print_findings(findings, f"{spec.path}: all {len(checks.RULES)} checks pass", spec.key)
        data = {"endpoint": spec.key, "spec": str(spec.path)}
        return (FINDINGS if findings else OK), {**data, "findings": [f.to_dict() for f in findings]}

    code = _each(
        args, specs, one, {"fleet": [f.to_dict() for f in across]} if len(specs) > 1 else None
    )
    if len(specs) > 1:
        if not args.json:
            out(f"\n== across {len(fleet.specs)} endpoints ==")
            _print_findings(across, _served_words(fleet))
        code = max(code, FINDINGS if across else OK)
    return code


def _served_words(fleet: fleets.Fleet) -> str:
    return "every pipeline on one endpoint: " + "; ".join(
        f"{name} serves {', '.join(fleet.served(fleet.specs[name]))}" for name in fleet.names
    )


def cmd_sizes(args: argparse.Namespace, settings: OpsSettings) -> int:
    spec = _chosen(args, settings, allow_all=False)[1][0] if not args.repos else None
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
    _, specs = _chosen(args, settings)
    api = _management(settings)

    def one(spec: EndpointSpec) -> tuple[int, dict[str, Any]]:
        plan = plans.make_plan(api, spec, settings.environ)
        if not args.json:
            _print_plan(plan)
            out(
                f"\nnothing to change for endpoint {spec.key}"
                if not plan.has_changes
                else f"\nrun `python -m deploy apply --endpoint {spec.key}`"
            )
        data = {"changes": [c.to_dict() for c in plan.changes], "hasChanges": plan.has_changes}
        return (FINDINGS if plan.has_changes else OK), data

    return _each(args, specs, one)


def cmd_apply(args: argparse.Namespace, settings: OpsSettings) -> int:
    fleet, specs = _chosen(args, settings)
    # A routing error across endpoints (a pipeline on two, or on none) refuses every apply.
    across = [f for f in fleets.fleet_findings(fleet) if f.severity == checks.ERROR]
    if across:
        _print_findings(across, "")
        out(f"\napply refused: {len(across)} error(s) across the endpoint specs; run check")
        return FINDINGS
    api = _management(settings)
    return _each(args, specs, lambda spec: _apply_one(args, settings, api, spec))


def _apply_one(
    args: argparse.Namespace, settings: OpsSettings, api: ManagementAPI, spec: EndpointSpec
) -> tuple[int, dict[str, Any]]:
    findings = checks.run_checks(spec, _size_models(spec, args.offline, settings))
    errors = [f for f in findings if f.severity == checks.ERROR]
    if errors:
        _print_findings(errors, "", spec.key)
        out(f"\napply refused for endpoint {spec.key}: {len(errors)} check error(s); fix the spec")
        return FINDINGS, {"refused": [f.to_dict() for f in errors]}
    for f in findings:
        progress(f"warning {f.rule} (endpoint {spec.key}): {f.message}")
    if args.recreate:
        balance = _balance(api)
        if balance is not None and balance < 0:
            out(
                f"apply --recreate refused: the balance is ${balance:.2f}; a new endpoint would "
                "answer Not Found too. Add funds first."
            )
            return FINDINGS, {"refused": "negative balance"}
    plan = plans.make_plan(api, spec, settings.environ)
    try:
        if args.recreate:
            result = plans.recreate(api, plan, progress)
        elif not plan.has_changes:
            result = {"unchanged": True, "endpointId": plan.endpoint and plan.endpoint["id"]}
        else:
            result = plans.apply_plan(api, plan, progress, release_wait_s=args.release_wait)
    except plans.ApplyError as exc:
        out(f"apply failed for endpoint {spec.key}: {exc}")
        return FINDINGS, {"failed": str(exc)}
    return OK, _report_apply(args, plan, result)


def _balance(api: ManagementAPI) -> float | None:
    try:
        value = api.balance().get("clientBalance")
    except ManagementError as exc:
        progress(f"balance not checked: {exc}")
        return None
    return value if isinstance(value, int | float) else None


def _report_apply(args: argparse.Namespace, plan: plans.Plan, result: dict) -> dict[str, Any]:
    data = {"changes": [c.to_dict() for c in plan.changes], **result}
    if args.json:
        return data
    if result.get("unchanged"):
        out(f"endpoint {result['endpointId']} already matches {plan.spec.path}: nothing to do")
        return data
    out(f"endpoint {result['endpointId']} is up to date with {plan.spec.path}")
    if result.get("release"):
        rel = result["release"]
        out(f"release v{rel['version']} verified ({', '.join(rel['diff']) or 'no diff'})")
    variable = _id_variable(plan.spec, result["endpointId"])
    if result.get("replaced"):
        out(
            f"replaced endpoint {result['replaced']}: set {variable} everywhere "
            "(web app, Celery) and restart them"
        )
    elif result.get("created"):
        out(f"new endpoint {plan.spec.key}: set {variable}")
    return data


def _id_variable(spec: EndpointSpec, endpoint_id: str) -> str:
    """How the app learns this endpoint's id (one endpoint: RUNPOD_ENDPOINT_ID)."""
    if spec.pipelines is not None:
        return f"{spec.key}={endpoint_id} in RUNPOD_ENDPOINT_IDS"
    return f"RUNPOD_ENDPOINT_ID={endpoint_id}"


def cmd_destroy(args: argparse.Namespace, settings: OpsSettings) -> int:
    spec = _chosen(args, settings, allow_all=False)[1][0]
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
    # The endpoint's name (its spec file's), when the command was given or chose a spec.
    name: str | None = None
    # One of several endpoints: the commands the advice gives must name it.
    one_of_several: bool = False

    @property
    def key(self) -> str:
        return self.name or self.jobapi.endpoint_id

    @property
    def label(self) -> str:
        eid = self.jobapi.endpoint_id
        return f"{self.name} ({eid})" if self.name and self.name != eid else eid


def split_endpoint_url(url: str) -> tuple[str, str | None]:
    """``.../v2`` → (it, None); ``.../v2/<endpoint id>`` (what `make run` prints) → (``.../v2``,
    the id), so either form of the URL can be given to --local."""
    parts = urlsplit(url.rstrip("/"))
    head, _, last = parts.path.rpartition("/")
    if head.endswith("/v2") and last:
        return url.rstrip("/")[: -len(last) - 1], last
    return url.rstrip("/"), None


def _targets(
    args: argparse.Namespace, settings: OpsSettings, *, allow_all: bool = False
) -> list[Target]:
    """The endpoints a job-API command acts on, each with its id.

    An id given outright (``--endpoint-id``, or a URL ending in it) needs no spec. Otherwise
    the spec is chosen (``--endpoint NAME``, ``--all``, or the only one) and its id comes
    from ``RUNPOD_ENDPOINT_IDS``, then ``RUNPOD_ENDPOINT_ID`` (one spec only), then: on the
    local endpoint the name itself (it serves ``/v2/<name>``), on RunPod the endpoint
    carrying the spec's ``[endpoint].name``."""
    api_key = settings.api_key()
    base, named_id = split_endpoint_url(args.local or settings.runpod_endpoint_base_url)
    local = bool(args.local) or not is_runpod(base, settings.runpod_rest_url)
    management = None if local else _management(settings)

    def target(endpoint_id: str, name: str | None = None, several: bool = False) -> Target:
        jobapi = JobAPI(endpoint_id, api_key, base)
        return Target(jobapi, api_key, local, management, name, several)

    explicit = args.endpoint_id or named_id
    if explicit:
        return [target(explicit, args.endpoint)]
    named = bool(args.endpoint or getattr(args, "all", False))
    try:
        fleet = _fleet(args, settings)
    except SpecError:
        if local and not named:
            return [target(settings.runpod_endpoint_id or "local")]  # one local endpoint
        raise
    specs = fleets.choose(fleet, args.endpoint, getattr(args, "all", False), allow_all=allow_all)
    found = None
    targets = []
    for spec in specs:
        eid = settings.runpod_endpoint_ids.get(spec.key)
        if not eid and len(fleet.specs) == 1:
            eid = settings.runpod_endpoint_id
        if not eid and local:
            eid = spec.key if named else "local"
        if not eid:
            found = found if found is not None else management.list_endpoints()
            match = [e["id"] for e in found if e.get("name") == spec.name]
            if not match:
                raise UsageError(
                    f"endpoint {spec.key}: no RunPod endpoint named {spec.name!r}; set "
                    f"RUNPOD_ENDPOINT_IDS={spec.key}=<id> or run "
                    f"`python -m deploy apply --endpoint {spec.key}`"
                )
            eid = match[0]
        targets.append(target(eid, spec.key, len(fleet.specs) > 1))
    return targets


def _target(args: argparse.Namespace, settings: OpsSettings) -> Target:
    return _targets(args, settings)[0]


def cmd_doctor(args: argparse.Namespace, settings: OpsSettings) -> int:
    return _each(args, _targets(args, settings, allow_all=True), lambda t: _doctor_one(args, t))


DEPLOY_COMMAND = re.compile(r"`python -m deploy (\w+)")


def _naming(finding: Finding, name: str | None) -> Finding:
    """The diagnosis rules word their fixes for one endpoint (`python -m deploy purge`); with
    an endpoint named, the commands they give name it too, so they act on that one."""
    if not name:
        return finding
    fix = DEPLOY_COMMAND.sub(lambda m: f"`python -m deploy {m[1]} --endpoint {name}", finding.fix)
    return replace(finding, fix=fix)


def _doctor_one(args: argparse.Namespace, target: Target) -> tuple[int, dict[str, Any]]:
    progress(
        f"reading health, workers, logs{'' if target.local else ', releases, balance'} "
        f"of endpoint {target.label}"
    )
    if target.local:
        facts = doc.gather_local(target.jobapi, args.lines)
    else:
        facts = doc.gather_runpod(target.management, target.jobapi, args.lines)
    facts.startup_grace_s = args.startup_grace
    named = target.name if target.one_of_several else None
    findings = [_naming(f, named) for f in doc.diagnose(facts)]
    problems = [f for f in findings if f.severity != doc.INFO]
    data = {
        "endpoint": target.name,
        "endpointId": facts.endpoint_id,
        "target": facts.target,
        "health": facts.health,
        "summary": facts.summary,
        "balance": facts.balance,
        "findings": [f.to_dict() for f in findings],
    }
    if not args.json:
        jobs = (facts.health or {}).get("jobs") or {}
        out(f"endpoint {target.label} ({facts.target})")
        if facts.health:
            workers = facts.summary or facts.health.get("workers") or {}
            out(
                table(
                    ["inQueue", "inProgress", "completed", "failed", "workers"],
                    [
                        (
                            jobs.get("inQueue"),
                            jobs.get("inProgress"),
                            jobs.get("completed"),
                            jobs.get("failed"),
                            ", ".join(f"{k} {v}" for k, v in workers.items() if v),
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
        _print_findings(findings, f"no problems found on endpoint {target.label}", target.name)
    return (FINDINGS if problems else OK), data


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
    return _each(args, _targets(args, settings, allow_all=True), lambda t: _workers_one(args, t))


def _workers_one(args: argparse.Namespace, target: Target) -> tuple[int, dict[str, Any]]:
    rows, summary = _worker_rows(target)
    if not args.json:
        if rows:
            headers = list(rows[0])
            out(table(headers, [[r.get(h) for h in headers] for r in rows]))
        else:
            out(f"no workers on endpoint {target.label}")
        out("\n" + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return OK, {"endpoint": target.name, "workers": rows, "summary": summary}


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
        out(f"endpoint {target.label}, worker {worker_id}, last {len(lines)} line(s):")
        for line in lines:
            out(f"  {line}")
    return OK


def cmd_purge(args: argparse.Namespace, settings: OpsSettings) -> int:
    target = _target(args, settings)
    result = target.jobapi.purge_queue()
    if args.json:
        emit_json({"endpoint": target.name, **result})
    else:
        out(
            f"removed {result.get('removed', 0)} queued job(s) from endpoint "
            f"{target.label}; running jobs and other endpoints are untouched"
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
    fleet, specs = _chosen(args, settings)
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
        return _each(args, items, lambda item: _history_one(args, fleet, item, jobs))
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
