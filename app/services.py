"""What the domain functions need, in one typed object per process: settings, storage, the
job-API clients, the ``/status`` budget and ``enqueue``.

``create_app`` builds one ``Services`` and keeps it in ``app.extensions["services"]``;
``services()`` returns the current app's. Network clients (Redis, the job-API clients, the
budget) are made on first use and dropped by ``reset()``, which the Celery worker calls in
each forked child (``tasks/worker.py``) so no two processes share a socket. gunicorn loads the
app in each worker after its fork (no ``--preload``), so web workers start with none.

This is the one module that imports the job-API client: the rest of ``app`` takes ``JobAPI``
and its errors from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis
from flask import Flask, current_app

from app.lifecycle.status_budget import StatusBudget
from app.settings import Settings
from app.storage import Storage
from deploy.runpod.jobapi import (
    Backoff,
    EndpointNotFound,
    EndpointUnreachable,
    JobAPI,
    JobAPIError,
    JobNotFound,
    RateLimited,
    SubmitOutcomeUnknown,
)

Enqueue = Callable[..., None]

__all__ = [
    "EndpointNotFound",
    "EndpointUnreachable",
    "Enqueue",
    "JobAPI",
    "JobAPIError",
    "JobNotFound",
    "RateLimited",
    "Services",
    "SubmitOutcomeUnknown",
    "init_app",
    "services",
    "services_of",
]

_CLIENTS = ("redis", "api", "status_api", "budget")


@dataclass
class Services:
    settings: Settings
    storage: Storage
    # Sends task ``name`` by name (``app`` never imports ``tasks``). The job row is the
    # truth, so a message lost here (broker down) is not an error the user sees: reconcile
    # re-enqueues whatever a lost message left behind.
    enqueue: Enqueue

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=5)

    @cached_property
    def api(self) -> JobAPI:
        """The client for the configured endpoint (the one job-API client)."""
        return JobAPI(
            self.settings.runpod_endpoint_id,
            self.settings.runpod_api_key,
            self.settings.runpod_endpoint_base_url,
            read_timeout=10.0,
            backoff=Backoff(base=0.25, cap=2.0, attempts=3),
        )

    @cached_property
    def status_api(self) -> JobAPI:
        """The client polls use: one attempt per call. ``JobAPI``'s own retries would send
        more ``/status`` requests than the budget granted; here a failed poll is retried by
        the next poll, which asks the budget again (``app/lifecycle/status_budget.py``)."""
        return JobAPI(
            self.settings.runpod_endpoint_id,
            self.settings.runpod_api_key,
            self.settings.runpod_endpoint_base_url,
            read_timeout=10.0,
            backoff=Backoff(attempts=1),
        )

    @cached_property
    def budget(self) -> StatusBudget:
        return StatusBudget(self.redis, self.settings.status_budget_per_10s)

    def replace(self, **changes: Any) -> Services:
        """A copy with ``changes`` (``settings=...`` for a tweaked knob); its clients are
        made afresh on first use."""
        return dataclasses.replace(self, **changes)

    def reset(self) -> None:
        """Drop the network clients (after a fork: the child must not share the parent's)."""
        for name in _CLIENTS:
            self.__dict__.pop(name, None)


def init_app(app: Flask, services: Services) -> Services:
    app.extensions["services"] = services
    return services


def services_of(app: Flask) -> Services:
    return app.extensions["services"]


def services() -> Services:
    """The current app's services."""
    return services_of(current_app)
