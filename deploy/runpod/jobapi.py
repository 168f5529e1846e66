"""The one client for RunPod's job API: ``/run``, ``/status``, ``/cancel``, ``/retry``,
``/purge-queue`` and ``/health``, on RunPod or on the local endpoint (plus its ``/workers``,
``/stats`` and worker logs).

Retries are urllib3's, on the session's adapters (``deploy.runpod.retry``): reads, cancels
and purges are retried on connection errors, 429 and 5xx with capped, jittered backoff.
``/run`` and ``/retry`` are sent again only when the request provably never reached the
server (the connection could not be opened) or was refused with 429; any other failure
raises ``SubmitOutcomeUnknown``, since RunPod has no idempotency key and a blind re-send
could execute the job twice.
"""

from __future__ import annotations

from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError

from deploy.runpod.retry import Backoff
from deploy.runpod.vocabulary import DEFAULT_JOB_URL as DEFAULT_BASE_URL

__all__ = ["DEFAULT_BASE_URL", "Backoff", "JobAPI"]

# Cancels and purges may arrive twice harmlessly; /run and /retry may not (see the top).
IDEMPOTENT = frozenset({"GET", "POST"})
SUBMIT_ROUTES = ("run", "retry/")


class JobAPIError(Exception):
    """Base class; ``str()`` says what happened and what to do next."""

    status_code: int | None = None


class Unauthorized(JobAPIError):
    status_code = 401


class JobNotFound(JobAPIError):
    """The endpoint answered ``request does not exist``: purged, expired or never existed."""

    status_code = 404


class EndpointNotFound(JobAPIError):
    """Every route answers Not Found: wrong endpoint id, or RunPod disabled the endpoint."""

    status_code = 404


class WorkerNotFound(JobAPIError):
    """The local endpoint has no worker by that id (and no log left from one)."""

    status_code = 404


class RateLimited(JobAPIError):
    status_code = 429


class EndpointUnreachable(JobAPIError):
    """The endpoint could not be reached or kept failing with 5xx."""


class BadRequest(JobAPIError):
    status_code = 400


class SubmitOutcomeUnknown(JobAPIError):
    """``/run`` may or may not have created a job; reconciliation must decide."""


def _is_connect_failure(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (no connection was opened):
    urllib3 gave up on connect retries, which is all ``/run``'s adapter makes."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, ConnectTimeoutError)  # NewConnectionError and DNS failures too


class JobAPI:
    """Client for one endpoint. ``base_url`` ends in ``/v2``; the key is never logged."""

    def __init__(
        self,
        endpoint_id: str,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 15.0,
        backoff: Backoff | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not endpoint_id:
            raise ValueError("endpoint id is empty: set RUNPOD_ENDPOINT_ID")
        if not api_key:
            raise ValueError("API key is empty: set RUNPOD_API_KEY")
        self.endpoint_id = endpoint_id
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._timeout = (connect_timeout, read_timeout)
        backoff = backoff or Backoff()
        self._session = session or requests.Session()
        self._session.mount(self.base_url, backoff.adapter(IDEMPOTENT, pool_maxsize=32))
        for route in SUBMIT_ROUTES:
            # The longest mounted prefix wins: these routes resend only what never arrived.
            self._session.mount(self.url(route), backoff.adapter(frozenset(), pool_maxsize=32))

    def __repr__(self) -> str:
        return f"JobAPI(endpoint_id={self.endpoint_id!r}, base_url={self.base_url!r})"

    def url(self, route: str) -> str:
        return f"{self.base_url}/{self.endpoint_id}/{route}"

    def run(
        self,
        input: dict[str, Any],
        *,
        webhook: str | None = None,
        policy: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Submit a job; returns ``{"id", "status"}``. Never re-sent once it may have arrived."""
        body: dict[str, Any] = {"input": input}
        if webhook:
            body["webhook"] = webhook
        if policy:
            body["policy"] = policy
        return self._request("POST", "run", json=body, idempotent=False)

    def status(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"status/{job_id}", job=True)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"cancel/{job_id}", job=True)

    def retry(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"retry/{job_id}", job=True, idempotent=False)

    def purge_queue(self) -> dict[str, Any]:
        return self._request("POST", "purge-queue")

    def health(self) -> dict[str, Any]:
        return self._request("GET", "health")

    # The local endpoint's extra routes (deploy/local); RunPod's job API has none of them, and
    # answers Not Found (EndpointNotFound) there.
    def workers(self) -> dict[str, Any]:
        """Workers with state, exit code and its meaning, log tail; plus crash-loop facts."""
        return self._request("GET", "workers")

    def worker_logs(self, worker_id: str, lines: int = 100) -> list[str]:
        """The last ``lines`` lines of one worker's stdout/stderr."""
        body = self._request("GET", f"workers/{worker_id}/logs?lines={int(lines)}", worker=True)
        return list(body.get("lines") or [])

    def billing(self, since: float = 0.0) -> dict[str, Any]:
        """Each worker's billed life since ``since`` (Unix seconds), every second attributed."""
        return self._request("GET", f"billing?since={float(since):.3f}")

    def stats(self) -> dict[str, Any]:
        """Request counts per route since the endpoint started."""
        return self._request("GET", "stats")

    def _request(
        self,
        method: str,
        route: str,
        *,
        json: dict[str, Any] | None = None,
        job: bool = False,
        worker: bool = False,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        try:
            resp = self._session.request(
                method, self.url(route), json=json, headers=self._headers, timeout=self._timeout
            )
        except requests.RequestException as exc:
            if not idempotent and not _is_connect_failure(exc):
                raise SubmitOutcomeUnknown(
                    f"{method} {route}: the request may have reached the endpoint "
                    f"({type(exc).__name__}); reconciliation will find out"
                ) from exc
            raise EndpointUnreachable(
                f"cannot reach {self.base_url}/{self.endpoint_id} ({type(exc).__name__}); "
                "check the endpoint URL and your network"
            ) from exc
        if resp.status_code == 429:
            # Refused outright (nothing ran); the adapter already tried again.
            raise RateLimited(f"{method} {route}: endpoint answered 429; try again later")
        if resp.status_code >= 500:
            if not idempotent:
                raise SubmitOutcomeUnknown(
                    f"{method} {route}: endpoint answered {resp.status_code}; "
                    "reconciliation will find out whether the job exists"
                )
            raise EndpointUnreachable(
                f"{method} {route}: endpoint answered {resp.status_code}; try again later"
            )
        return self._decode(resp, job=job, worker=worker)

    def _decode(self, resp: requests.Response, *, job: bool, worker: bool) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {"value": body}
        if resp.ok:
            return body
        message = str(body.get("error") or body.get("message") or body.get("detail") or "")
        if resp.status_code == 401:
            raise Unauthorized("the endpoint refused the API key (401): check RUNPOD_API_KEY")
        if resp.status_code == 404:
            if job and "request does not exist" in message:
                raise JobNotFound("request does not exist (purged, expired or never created)")
            if worker and "error" in body:
                raise WorkerNotFound(message)
            raise EndpointNotFound(
                f"endpoint {self.endpoint_id} answered Not Found: check RUNPOD_ENDPOINT_ID; "
                "on RunPod this also happens when the account balance went negative "
                "(add funds, then `python -m deploy apply --recreate`)"
            )
        if resp.status_code == 413:
            raise BadRequest(f"payload too large (413): {message or 'send files as URLs'}")
        raise BadRequest(f"endpoint answered {resp.status_code}: {message or resp.reason}")
