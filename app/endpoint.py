"""The endpoint's state as the pages show it: a snapshot refreshed by reconcile.

Pages never call the endpoint themselves; ``refresh_snapshot`` (run by the reconcile task,
the admin "refresh" action and ``flask admin health``) stores ``/health`` and, on the local
endpoint, ``/workers`` in the ``snapshots`` table.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from sqlalchemy.orm import Session

from app.diagnosis import diagnose, endpoint_unreachable
from app.models import Snapshot, utcnow
from app.settings import Settings

SNAPSHOT = "endpoint"


def fetch_workers(api: Any) -> dict[str, Any] | None:
    """The local endpoint's ``/workers`` report; None on RunPod (no such job-API route)."""
    from deploy.jobapi import JobAPIError

    try:
        return api.workers()
    except JobAPIError:
        return None


def on_runpod(settings: Settings) -> bool:
    return urlparse(settings.runpod_endpoint_base_url).hostname in (
        "api.runpod.ai",
        "api.runpod.io",
    )


def fetch_balance(settings: Settings) -> dict[str, Any]:
    """Account balance and spend per hour (RunPod management API, GraphQL for now)."""
    from deploy.ops.management import ManagementAPI, ManagementError

    try:
        return ManagementAPI(settings.runpod_api_key, timeout=10.0).balance()
    except (ManagementError, OSError) as exc:
        return {"error": f"cannot read the balance: {exc}"}


def refresh_snapshot(session: Session, settings: Settings, api: Any, queued: int) -> dict:
    """Ask the endpoint how it is; store and return ``{"health", "workers", "error", ...}``."""
    from deploy.jobapi import EndpointNotFound, JobAPIError

    data: dict[str, Any] = {"checked_at": utcnow().isoformat(), "endpoint_id": api.endpoint_id}
    try:
        data["health"] = api.health()
    except EndpointNotFound:
        data["error"] = endpoint_unreachable(
            settings.runpod_endpoint_id, settings.endpoint_unreachable_grace_s
        )
        data["unreachable"] = True
    except JobAPIError as exc:
        data["error"] = f"cannot read the endpoint's health: {exc}"
    if "health" in data:
        data["workers"] = fetch_workers(api)
        data["diagnosis"] = diagnose(data["health"], data["workers"], queued)
    if on_runpod(settings):
        data["balance"] = fetch_balance(settings)
    row = session.get(Snapshot, SNAPSHOT)
    if row is None:
        row = Snapshot(name=SNAPSHOT, data=data)
        session.add(row)
    else:
        row.data = data
    session.commit()
    return data


def load_snapshot(session: Session) -> dict[str, Any] | None:
    row = session.get(Snapshot, SNAPSHOT)
    return dict(row.data) if row else None
