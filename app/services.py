"""What the domain functions need, in one typed object per process: settings, storage, the
job-API clients, the ``/status`` budget and ``enqueue``.

``create_app`` builds one ``Services`` and keeps it in ``app.extensions["services"]``;
``services()`` returns the current app's. Network clients (Redis, the job-API clients, the
budget) are made on first use and dropped by ``reset()``, which the Celery worker calls in
each forked child (``tasks/worker.py``) so no two processes share a socket. gunicorn loads the
app in each worker after its fork (no ``--preload``), so web workers start with none.

This is the one module that imports the job-API client: the rest of ``app`` takes ``JobAPI``
and its errors from here. There is one client (and one ``/status`` budget) per configured
endpoint, by name: ``api_for(job.endpoint)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis
from flask import Flask, current_app

from app.endpoints.routing import DEFAULT, Fleet, UnknownEndpoint
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
    "UnknownEndpoint",
    "init_app",
    "services",
    "services_of",
]

_CLIENTS = ("redis", "_clients")


def budget_name(endpoint: str) -> str:
    """The Redis name of ``endpoint``'s budget; "status" for the one default endpoint, as
    before there were several."""
    return "status" if endpoint == DEFAULT else f"status:{endpoint}"


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

    @property
    def fleet(self) -> Fleet:
        """The configured endpoints by name, and which pipeline each serves."""
        return self.settings.fleet

    def endpoint_of(self, job: Any) -> str:
        """The name of the endpoint ``job``'s submit, polls and cancel go to
        (``Fleet.route``: its own, or its pipeline's for a row older than the fleet)."""
        return self.fleet.route(job.endpoint, job.pipeline).name

    @cached_property
    def _clients(self) -> dict[tuple[str, str], Any]:
        return {}

    def _client(self, kind: str, name: str, make: Callable[[], Any]) -> Any:
        key = (kind, name)
        if key not in self._clients:
            self._clients[key] = make()
        return self._clients[key]

    def _job_api(self, kind: str, name: str, backoff: Backoff) -> JobAPI:
        endpoint_id = self.fleet.get(name).endpoint_id
        return self._client(
            kind,
            name,
            lambda: JobAPI(
                endpoint_id,
                self.settings.runpod_api_key,
                self.settings.runpod_endpoint_base_url,
                read_timeout=10.0,
                backoff=backoff,
            ),
        )

    def api_for(self, name: str) -> JobAPI:
        """The job-API client of endpoint ``name`` (the one client, per endpoint; an unknown
        name raises ``UnknownEndpoint``)."""
        return self._job_api("api", name, Backoff(base=0.25, cap=2.0, attempts=3))

    def status_api_for(self, name: str) -> JobAPI:
        """The client polls of endpoint ``name`` use: one attempt per call. ``JobAPI``'s own
        retries would send more ``/status`` requests than the budget granted; here a failed
        poll is retried by the next poll, which asks the budget again
        (``app/lifecycle/status_budget.py``)."""
        return self._job_api("status_api", name, Backoff(attempts=1))

    def budget_for(self, name: str) -> StatusBudget:
        """Endpoint ``name``'s ``/status`` budget: RunPod counts its limits per endpoint, so
        a flood of polls on one never spends another's."""
        self.fleet.get(name)
        return self._client(
            "budget",
            name,
            lambda: StatusBudget(
                self.redis, self.settings.status_budget_per_10s, name=budget_name(name)
            ),
        )

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
