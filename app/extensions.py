"""Extension objects and accessors for what ``create_app`` keeps in ``app.extensions``."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_wtf import CSRFProtect

from app.settings import Settings
from app.storage import Storage

csrf = CSRFProtect()


def get_settings() -> Settings:
    return current_app.extensions["settings"]


def get_storage() -> Storage:
    return current_app.extensions["storage"]


def enqueue(name: str, *args: Any, countdown: float | None = None) -> None:
    """Send task ``name`` (by name: ``app`` never imports ``tasks``).

    The job row is the truth, so a message lost here (broker down) is not an error the
    user sees: reconcile re-enqueues whatever a lost message left behind.
    """
    current_app.extensions["enqueue"](name, *args, countdown=countdown)


def get_job_api():
    """A client for the configured endpoint (``deploy.runpod.jobapi``, the one job-API client)."""
    from deploy.runpod.jobapi import Backoff, JobAPI

    settings = get_settings()
    return JobAPI(
        settings.runpod_endpoint_id,
        settings.runpod_api_key,
        settings.runpod_endpoint_base_url,
        read_timeout=10.0,
        backoff=Backoff(base=0.25, cap=2.0, attempts=3),
    )


def get_redis():
    client = current_app.extensions.get("redis")
    if client is None:
        import redis

        client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=5)
        current_app.extensions["redis"] = client
    return client
