"""The endpoint's state as the pages show it: a snapshot refreshed by reconcile.

Pages never call the endpoint themselves; ``refresh_snapshot`` (run by the reconcile task,
the admin "refresh" action, the dashboard while an operator watches it, and ``flask admin
health``) stores ``/health``, the workers with their last log lines (the local endpoint's
``/workers``, or RunPod's REST v2 workers and worker logs) and the log tails of the workers
that ran recently failed jobs in the ``snapshots`` table.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.endpoints.diagnosis import diagnose, endpoint_unreachable
from app.endpoints.routing import DEFAULT
from app.models import Job, Snapshot, Status, utcnow
from app.services import EndpointNotFound, JobAPIError, Services
from app.settings import Settings
from deploy.runpod.management import ManagementAPI, ManagementError
from deploy.runpod.vocabulary import WorkerRow, is_runpod

log = logging.getLogger(__name__)

SNAPSHOT = "endpoint"  # the default endpoint's row; others are "endpoint:<name>"
REFRESH_ASKED = "endpoint-refresh-asked"  # when a page last asked for a fresh snapshot
FRESH_SNAPSHOT_S = 5  # someone watching gets endpoint health at most this old (/health only)
LOG_LINES = 12  # per worker on the dashboard
FAILED_LOG_LINES = 40  # per recently failed job (admin job page)
FAILED_JOBS_LOGGED = 5
FAILED_WITHIN = timedelta(hours=1)
RUNPOD_WORKERS_LOGGED = 5  # each RunPod log read waits for its stream to go quiet


def fetch_workers(api: Any) -> dict[str, Any] | None:
    """The local endpoint's ``/workers`` report; None on RunPod (no such job-API route)."""
    try:
        return api.workers()
    except JobAPIError:
        return None


def on_runpod(settings: Settings) -> bool:
    return is_runpod(settings.runpod_endpoint_base_url, settings.runpod_rest_url)


def management(settings: Settings) -> ManagementAPI:
    return ManagementAPI(
        settings.runpod_api_key,
        settings.runpod_rest_url or None,
        settings.runpod_graphql_url or None,
        timeout=10.0,
    )


def snapshot_name(endpoint: str) -> str:
    """The snapshot row of ``endpoint`` (one per endpoint: each has its own health)."""
    return SNAPSHOT if endpoint == DEFAULT else f"{SNAPSHOT}:{endpoint}"


# The REST v2 endpoint fields the console shows (workers, idle timeout, scaler, GPU pools).
ENDPOINT_SETTINGS = ("workers", "scaling", "gpu", "timeout")


def fetch_runpod_workers(settings: Settings, endpoint_id: str) -> dict[str, Any] | None:
    """RunPod's workers (REST v2) in the local endpoint's ``/workers`` shape, with the log
    tails of the first few; None when RunPod cannot say."""
    api = management(settings)
    try:
        listing = api.list_workers(endpoint_id)
    except (ManagementError, OSError) as exc:
        log.warning("cannot list RunPod workers: %s", exc)
        return None
    workers = []
    for index, worker in enumerate(listing.get("workers") or []):
        row = WorkerRow.from_runpod(worker)
        if index < RUNPOD_WORKERS_LOGGED and row.id:
            logs = _runpod_logs(api, endpoint_id, row.id, LOG_LINES)
            row = replace(row, log_tail=tuple(str(line) for line in logs))
        workers.append(row.to_report())
    report = {"workers": workers, "summary": listing.get("summary") or {}}
    try:
        # Its scaling settings, for the console (the local endpoint reports the same keys).
        found = api.get_endpoint(endpoint_id)
        report["endpoint"] = {key: found.get(key) for key in ENDPOINT_SETTINGS if key in found}
    except (ManagementError, OSError) as exc:
        log.warning("cannot read RunPod endpoint %s: %s", endpoint_id, exc)
    return report


def _runpod_logs(api: Any, endpoint_id: str, worker_id: str, lines: int) -> list[str]:
    try:
        return api.worker_logs(endpoint_id, worker_id, tail=lines, quiet_s=1.0)
    except (ManagementError, OSError) as exc:
        return [f"(cannot read this worker's log: {exc})"]


def fetch_failed_job_logs(
    session: Session, settings: Settings, api: Any, endpoint: str = DEFAULT
) -> dict[str, dict[str, Any]]:
    """``{job id: {"worker_id", "lines"}}`` for recently failed jobs of ``endpoint`` whose
    worker is known."""
    since = utcnow() - FAILED_WITHIN
    jobs = session.scalars(
        select(Job)
        .where(
            Job.status.in_([Status.FAILED, Status.TIMED_OUT]),
            Job.worker_id.is_not(None),
            Job.endpoint == endpoint,
            Job.finished_at >= since,
        )
        .order_by(Job.finished_at.desc())
        .limit(FAILED_JOBS_LOGGED)
    ).all()
    logs: dict[str, dict[str, Any]] = {}
    for job in jobs:
        if on_runpod(settings):
            lines = _runpod_logs(
                management(settings), api.endpoint_id, job.worker_id, FAILED_LOG_LINES
            )
        else:
            try:
                lines = api.worker_logs(job.worker_id, FAILED_LOG_LINES)
            except JobAPIError as exc:
                lines = [f"(cannot read this worker's log: {exc})"]
        logs[job.id] = {"worker_id": job.worker_id, "lines": [str(x) for x in lines]}
    return logs


def fetch_balance(settings: Settings) -> dict[str, Any]:
    """Account balance and spend per hour (RunPod management API, GraphQL for now)."""
    try:
        return management(settings).balance()
    except (ManagementError, OSError) as exc:
        return {"error": f"cannot read the balance: {exc}"}


def refresh_snapshot(
    session: Session, settings: Settings, api: Any, queued: int, endpoint: str = DEFAULT
) -> dict:
    """Ask endpoint ``endpoint`` (through its client ``api``) how it is; store its snapshot
    and return ``{"health", "workers", "error", "diagnosis", ...}``."""
    data: dict[str, Any] = {
        "checked_at": utcnow().isoformat(),
        "endpoint": endpoint,
        "endpoint_id": api.endpoint_id,
    }
    try:
        data["health"] = api.health()
    except EndpointNotFound:
        data["error"] = endpoint_unreachable(
            api.endpoint_id, settings.endpoint_unreachable_grace_s, endpoint
        )
        data["unreachable"] = True
    except JobAPIError as exc:
        data["error"] = f"cannot read the endpoint's health: {exc}"
    if "health" in data:
        runpod = on_runpod(settings)
        data["workers"] = (
            fetch_runpod_workers(settings, api.endpoint_id) if runpod else fetch_workers(api)
        )
        data["diagnosis"] = diagnose(
            data["health"], data["workers"], queued, "runpod" if runpod else "local"
        )
        data["job_logs"] = fetch_failed_job_logs(session, settings, api, endpoint)
    if on_runpod(settings):
        data["balance"] = fetch_balance(settings)
    row = session.get(Snapshot, snapshot_name(endpoint))
    if row is None:
        row = Snapshot(name=snapshot_name(endpoint), data=data)
        session.add(row)
    else:
        row.data = data
    session.commit()
    return data


def queued_on(session: Session, endpoint: str) -> int:
    """Jobs of ``endpoint`` the endpoint holds in its queue, as this app counts them."""
    statement = select(func.count()).select_from(Job)
    return int(
        session.scalar(statement.where(Job.status == Status.IN_QUEUE, Job.endpoint == endpoint))
        or 0
    )


def refresh_snapshots(
    session: Session, services: Services, endpoints: list[str] | None = None
) -> dict[str, dict]:
    """Refresh the snapshot of each configured endpoint (or of ``endpoints``) that has an
    id; ``{name: snapshot}``."""
    settings = services.settings
    names = endpoints if endpoints is not None else services.fleet.names
    return {
        name: refresh_snapshot(
            session, settings, services.api_for(name), queued_on(session, name), name
        )
        for name in names
        if settings.configured(name)
    }


def load_snapshot(session: Session, endpoint: str = DEFAULT) -> dict[str, Any] | None:
    row = session.get(Snapshot, snapshot_name(endpoint))
    return dict(row.data) if row else None


def snapshot_age_s(session: Session, endpoint: str = DEFAULT) -> float | None:
    row = session.get(Snapshot, snapshot_name(endpoint))
    if row is None:
        return None
    updated = row.updated_at
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=utcnow().tzinfo)
    return (utcnow() - updated).total_seconds()


def ask_refresh(
    session: Session, enqueue: Any, max_age_s: float, endpoints: list[str] | None = None
) -> bool:
    """Enqueue ``tasks.refresh_endpoint`` (every endpoint's snapshot) when the oldest of
    ``endpoints``' snapshots is older than ``max_age_s`` and nobody asked within that time
    (a dashboard open in three tabs asks once)."""
    ages = [snapshot_age_s(session, name) for name in endpoints or [DEFAULT]]
    if all(age is not None and age < max_age_s for age in ages):
        return False
    asked = session.get(Snapshot, REFRESH_ASKED)
    now = utcnow()
    if asked is not None:
        last = asked.updated_at
        if last.tzinfo is None:
            last = last.replace(tzinfo=now.tzinfo)
        if (now - last).total_seconds() < max_age_s:
            return False
        asked.data = {"at": now.isoformat()}
        asked.updated_at = now
    else:
        session.add(Snapshot(name=REFRESH_ASKED, data={"at": now.isoformat()}, updated_at=now))
    session.commit()
    enqueue("tasks.refresh_endpoint")
    return True
