"""The handlers behind ``python -m deploy check|sizes|plan|apply|destroy|gpus``, and what
every operator command shares: choosing the endpoints (``chosen``), running per endpoint
(``each``), the management API client and the error wrapper (``run``). The job-API commands
are in ``endpoint_commands``, ``cost`` in ``cost_command``.

Each handler returns an exit code: 0 ok, 1 findings or problems, 2 usage or API error. Every
handler gets the operator's settings (``deploy.ops.settings``, the one reader of the
environment); the API key comes from ``RUNPOD_API_KEY`` only and is never printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from deploy.findings import ERROR, WARNING, Finding
from deploy.ops import check as checks
from deploy.ops import fleet as fleets
from deploy.ops import plan as plans
from deploy.ops.output import FINDINGS, OK, USAGE, emit_json, err, out, progress, table
from deploy.ops.settings import OpsSettings
from deploy.ops.sizes import (
    SizeLookupError,
    model_size,
    recommended_disk_gb,
    recommended_volume_gb,
)
from deploy.ops.spec import REPO_ID, EndpointSpec
from deploy.runpod.jobapi import JobAPIError
from deploy.runpod.management import ManagementAPI, ManagementError


class UsageError(ValueError):
    """Bad flags or missing configuration (exit code 2)."""


def _size_models(spec: EndpointSpec, offline: bool, settings: OpsSettings) -> checks.CheckContext:
    ctx = checks.CheckContext(environ=dict(settings.environ))
    if not offline and spec.volume and settings.runpod_api_key:
        progress("reading GPU stock from the RunPod catalog")
        try:
            ctx.catalog = management_api(settings).gpu_catalog(spec.gpu_count)
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


def print_findings(findings: list[Finding], ok_text: str, endpoint: str | None = None) -> None:
    if not findings:
        out(ok_text)
        return
    where = f" (endpoint {endpoint})" if endpoint else ""
    for f in findings:
        out(f"[{f.severity}] {f.rule}{where}: {f.message}")
        if f.why:
            out(f"    why: {f.why}")
        out(f"    fix: {f.fix}")


def fleet_of(args: argparse.Namespace, settings: OpsSettings) -> fleets.Fleet:
    """The specs this run knows: ``--spec PATH`` alone, else the endpoints folder."""
    if getattr(args, "spec", None):
        return fleets.single(Path(args.spec))
    return fleets.load_fleet(settings.endpoints_dir)


def chosen(
    args: argparse.Namespace, settings: OpsSettings, *, allow_all: bool = True
) -> tuple[fleets.Fleet, list[EndpointSpec]]:
    fleet = fleet_of(args, settings)
    every = bool(getattr(args, "all", False))
    return fleet, fleets.choose(fleet, args.endpoint, every, allow_all=allow_all)


def each(
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
    fleet = fleet_of(args, settings)
    # check looks at every endpoint unless told one: the cross-endpoint rules need them all.
    specs = fleets.choose(fleet, args.endpoint, not args.endpoint, allow_all=True)
    across = fleets.fleet_findings(fleet)

    seen: list[Finding] = list(across) if len(specs) > 1 else []

    def one(spec: EndpointSpec) -> tuple[int, dict[str, Any]]:
        findings = checks.run_checks(spec, _size_models(spec, args.offline, settings))
        if len(specs) == 1:
            findings = findings + across  # one endpoint: one list, as before several existed
        seen.extend(findings)
        if not args.json:
            print_findings(findings, f"{spec.path}: all {len(checks.RULES)} checks pass", spec.key)
        data = {"endpoint": spec.key, "spec": str(spec.path)}
        return _check_code(findings), {**data, "findings": [f.to_dict() for f in findings]}

    code = each(
        args, specs, one, {"fleet": [f.to_dict() for f in across]} if len(specs) > 1 else None
    )
    if len(specs) > 1:
        if not args.json:
            out(f"\n== across {len(fleet.specs)} endpoints ==")
            print_findings(across, _served_words(fleet))
        code = max(code, _check_code(across))
    if not args.json:
        out(f"\n{_count_words(seen)}")
    return code


def _check_code(findings: list[Finding]) -> int:
    """Errors fail the check (and ``apply`` refuses them); warnings are advice: exit 0."""
    return FINDINGS if any(f.severity == ERROR for f in findings) else OK


def _count_words(findings: list[Finding]) -> str:
    """The closing line: ``2 warnings, 0 errors`` (a script reads the exit code instead)."""
    warnings = sum(f.severity == WARNING for f in findings)
    errors = sum(f.severity == ERROR for f in findings)
    return f"{_plural(warnings, 'warning')}, {_plural(errors, 'error')}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _served_words(fleet: fleets.Fleet) -> str:
    return "every pipeline on one endpoint: " + "; ".join(
        f"{name} serves {', '.join(fleet.served(fleet.specs[name]))}" for name in fleet.names
    )


def cmd_sizes(args: argparse.Namespace, settings: OpsSettings) -> int:
    spec = chosen(args, settings, allow_all=False)[1][0] if not args.repos else None
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


def management_api(settings: OpsSettings) -> ManagementAPI:
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
    _, specs = chosen(args, settings)
    api = management_api(settings)

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

    return each(args, specs, one)


def cmd_apply(args: argparse.Namespace, settings: OpsSettings) -> int:
    fleet, specs = chosen(args, settings)
    # A routing error across endpoints (a pipeline on two, or on none) refuses every apply.
    across = [f for f in fleets.fleet_findings(fleet) if f.severity == checks.ERROR]
    if across:
        print_findings(across, "")
        out(f"\napply refused: {len(across)} error(s) across the endpoint specs; run check")
        return FINDINGS
    api = management_api(settings)
    return each(args, specs, lambda spec: _apply_one(args, settings, api, spec))


def _apply_one(
    args: argparse.Namespace, settings: OpsSettings, api: ManagementAPI, spec: EndpointSpec
) -> tuple[int, dict[str, Any]]:
    findings = checks.run_checks(spec, _size_models(spec, args.offline, settings))
    errors = [f for f in findings if f.severity == checks.ERROR]
    if errors:
        print_findings(errors, "", spec.key)
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
    spec = chosen(args, settings, allow_all=False)[1][0]
    if not args.yes:
        raise UsageError(
            f"destroy deletes endpoint {spec.name!r} and its template"
            + (" and the network volume with its data" if args.include_volume else "")
            + ": rerun with --yes"
        )
    done = plans.destroy(
        management_api(settings), spec, progress, include_volume=args.include_volume
    )
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


def cmd_gpus(args: argparse.Namespace, settings: OpsSettings) -> int:
    gpus = management_api(settings).gpu_catalog(args.count)
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
