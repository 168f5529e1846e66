"""The handlers that talk to an endpoint's job API (and, on RunPod, its workers and logs):
``doctor``, ``workers``, ``logs``, ``purge`` and ``cancel``, for RunPod or the local endpoint,
one endpoint at a time or, for doctor and workers, ``--all``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from deploy.findings import Finding
from deploy.ops import doctor as doc
from deploy.ops import fleet as fleets
from deploy.ops.commands import UsageError, each, fleet_of, management_api, print_findings
from deploy.ops.output import FINDINGS, OK, USAGE, emit_json, out, progress, table
from deploy.ops.settings import OpsSettings
from deploy.ops.spec import SpecError
from deploy.runpod.jobapi import JobAPI, JobNotFound, WorkerNotFound
from deploy.runpod.management import ManagementAPI
from deploy.runpod.vocabulary import is_runpod, worker_row


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
    management = None if local else management_api(settings)

    def target(endpoint_id: str, name: str | None = None, several: bool = False) -> Target:
        jobapi = JobAPI(endpoint_id, api_key, base)
        return Target(jobapi, api_key, local, management, name, several)

    explicit = args.endpoint_id or named_id
    if explicit:
        return [target(explicit, args.endpoint)]
    named = bool(args.endpoint or getattr(args, "all", False))
    try:
        fleet = fleet_of(args, settings)
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
    return each(args, _targets(args, settings, allow_all=True), lambda t: _doctor_one(args, t))


DEPLOY_COMMAND = re.compile(r"`python -m deploy (\w+)")


def _naming(finding: Finding, name: str | None) -> Finding:
    """The diagnosis rules word their fixes for one endpoint (`python -m deploy purge`); with
    an endpoint named, the commands they give name it too, so they act on that one."""
    if not name:
        return finding
    fix = DEPLOY_COMMAND.sub(lambda m: f"`python -m deploy {m[1]} --endpoint {name}", finding.fix)
    return replace(finding, fix=fix)


def _workers_words(counts: dict[str, Any]) -> str:
    """The doctor table's workers cell: the states with workers in them, or "none" (an
    empty cell read as "not reported"). Health repeats idle as ``ready``; the total adds nothing."""
    shown = {
        k: v for k, v in counts.items() if isinstance(v, int) and v and k not in ("ready", "total")
    }
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "none"


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
            workers = _workers_words(facts.summary or facts.health.get("workers") or {})
            out(
                table(
                    ["inQueue", "inProgress", "completed", "failed", "workers"],
                    [
                        (
                            jobs.get("inQueue"),
                            jobs.get("inProgress"),
                            jobs.get("completed"),
                            jobs.get("failed"),
                            workers,
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
        print_findings(findings, f"no problems found on endpoint {target.label}", target.name)
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
    return each(args, _targets(args, settings, allow_all=True), lambda t: _workers_one(args, t))


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
