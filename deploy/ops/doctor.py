"""``doctor``: read health, workers and their logs, releases, balance and spend; the rules
in ``deploy.runpod.diagnosis`` say in plain words what is wrong and what to do.

Gathering (``gather_runpod``, ``gather_local``) is here; the rules read only ``Facts``, so
the same rules serve RunPod (REST v2 + job API + GraphQL balance), the local endpoint (job
API + its ``/workers`` and logs routes) and the web app's pages.
"""

from __future__ import annotations

from dataclasses import replace

from deploy.runpod.diagnosis import EXIT_IN_LOG, INFO, Facts, add_report, diagnose
from deploy.runpod.jobapi import EndpointNotFound, JobAPI, JobAPIError
from deploy.runpod.management import ManagementAPI, ManagementError, NotFound
from deploy.runpod.vocabulary import WorkerRow

__all__ = ["INFO", "Facts", "diagnose", "gather_local", "gather_runpod"]

LOG_LINES = 20


def _job_health(facts: Facts, jobapi: JobAPI) -> None:
    try:
        facts.health = jobapi.health()
    except EndpointNotFound:
        facts.not_found = True
    except JobAPIError as exc:
        facts.unavailable.append(f"health: {exc}")


def gather_local(jobapi: JobAPI, log_lines: int = LOG_LINES) -> Facts:
    """Facts from the local endpoint: job-API health plus its ``/workers`` route."""
    facts = Facts(target="local", endpoint_id=jobapi.endpoint_id)
    _job_health(facts, jobapi)
    if facts.not_found:
        return facts
    try:
        data = jobapi.workers()
    except JobAPIError as exc:
        facts.unavailable.append(f"workers: {type(exc).__name__}")
        return facts
    add_report(facts, data, log_lines)
    return facts


def gather_runpod(api: ManagementAPI, jobapi: JobAPI, log_lines: int = LOG_LINES) -> Facts:
    """Facts from RunPod: REST v2 endpoint, workers, logs, releases; job-API health; balance."""
    eid = jobapi.endpoint_id
    facts = Facts(target="runpod", endpoint_id=eid)
    try:
        facts.endpoint = api.get_endpoint(eid)
        facts.endpoint_exists = True
    except NotFound:
        facts.endpoint_exists = False
    except ManagementError as exc:
        facts.unavailable.append(f"endpoint: {exc}")
    _job_health(facts, jobapi)
    try:
        facts.balance = api.balance()
    except ManagementError as exc:
        facts.unavailable.append(f"balance: {exc}")
    if not facts.endpoint_exists:
        return facts
    try:
        data = api.list_workers(eid)
        facts.summary = dict(data.get("summary") or {})
        facts.workers = [WorkerRow.from_runpod(w) for w in data.get("workers") or []]
    except ManagementError as exc:
        facts.unavailable.append(f"workers: {exc}")
    facts.workers = [_with_logs(api, eid, row, log_lines, facts) for row in facts.workers]
    try:
        facts.releases = api.list_releases(eid)
    except ManagementError as exc:
        facts.unavailable.append(f"releases: {exc}")
    return facts


def _with_logs(
    api: ManagementAPI, eid: str, row: WorkerRow, log_lines: int, facts: Facts
) -> WorkerRow:
    """A live or unhealthy RunPod worker with its log tail and the exit code it logged."""
    if row.status not in ("unhealthy", "running", "initializing") or not row.id:
        return row
    lines: list[str] = []
    try:
        lines = [str(line) for line in api.worker_logs(eid, row.id, tail=log_lines)]
    except ManagementError as exc:
        facts.unavailable.append(f"logs of {row.id}: {exc}")
    found = [int(m) for line in lines for m in EXIT_IN_LOG.findall(line)]
    return replace(row, log_tail=tuple(lines), exit_code=found[-1] if found else None)
