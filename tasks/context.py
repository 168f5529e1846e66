"""What every task needs from the Flask app it runs in: settings, storage, the job-API
client, the poll budget and ``enqueue``."""

from __future__ import annotations

from flask import current_app

from app.budget import StatusBudget
from app.extensions import enqueue, get_job_api, get_redis, get_settings, get_storage
from app.polling import status_client


def budget() -> StatusBudget:
    cached = current_app.extensions.get("status_budget")
    if cached is None:
        cached = StatusBudget(get_redis(), get_settings().status_budget_per_10s)
        current_app.extensions["status_budget"] = cached
    return cached


def api():
    cached = current_app.extensions.get("job_api")
    if cached is None:
        cached = get_job_api()
        current_app.extensions["job_api"] = cached
    return cached


def status_api():
    """The client for ``/status``: one attempt per call, so each request spends one ticket."""
    cached = current_app.extensions.get("status_api")
    if cached is None:
        cached = status_client(get_settings())
        current_app.extensions["status_api"] = cached
    return cached


__all__ = ["api", "budget", "enqueue", "get_settings", "get_storage", "status_api"]
