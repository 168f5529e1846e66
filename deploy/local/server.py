"""HTTP face of the local endpoint: RunPod's job API, the worker protocol, extra routes.

One catch-all handler routes ``/v2/{endpoint_id}/{route}/...`` through a table, so every
bad request (unknown route, wrong method, bad key, odd id) gets the same clear JSON 4xx.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from deploy.local import workers as wk
from deploy.local.bodies import MB, BadBody, parse_json, read_json, read_limited
from deploy.local.endpoint import Endpoint
from deploy.local.host import Host
from deploy.local.jobs import Job
from deploy.local.limits import RateLimiter
from deploy.runpod.vocabulary import IN_PROGRESS, IN_QUEUE

# RunPod's documented limits: /run 10 MB, /runsync 20 MB, a worker's result about 20 MB.
RUN_LIMIT = 10 * MB
RUNSYNC_LIMIT = 20 * MB
RESULT_LIMIT = 20 * MB
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
MAX_POLICY_MS = 7 * 24 * 3600 * 1000
NOT_FOUND = {"message": "Not Found"}
S3_CONFIG_KEYS = ("accessId", "accessSecret", "bucketName", "endpointUrl")

Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    nargs: int
    handler: str
    worker: bool = False


ROUTES: dict[str, Route] = {
    "run": Route("POST", 0, "run"),
    "runsync": Route("POST", 0, "runsync"),
    "status": Route("GET", 1, "status"),
    "stream": Route("GET", 1, "stream"),
    "cancel": Route("POST", 1, "cancel"),
    "retry": Route("POST", 1, "retry"),
    "purge-queue": Route("POST", 0, "purge_queue"),
    "health": Route("GET", 0, "health"),
    "workers": Route("GET", 0, "workers"),
    "stats": Route("GET", 0, "stats"),
    "billing": Route("GET", 0, "billing"),
    "job-take": Route("GET", 1, "job_take", worker=True),
    "job-take-batch": Route("GET", 1, "job_take_batch", worker=True),
    "job-stop": Route("GET", 1, "job_stop", worker=True),
    "job-done": Route("POST", 2, "job_done", worker=True),
    "job-stream": Route("POST", 2, "job_stream", worker=True),
    "ping": Route("GET", 1, "ping", worker=True),
}


def _s3_config(value: Any) -> dict[str, str] | None:
    """``s3Config`` as RunPod takes it: the worker reads it; the platform does nothing."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(value.get(k), str) for k in S3_CONFIG_KEYS
    ):
        raise BadInput(400, "'s3Config' must be an object with string " + ", ".join(S3_CONFIG_KEYS))
    return value


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
    )


def _error(status: int, message: str, **headers: str) -> web.Response:
    resp = _json({"error": message}, status)
    resp.headers.update(headers)
    return resp


class BadInput(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Api:
    """Request handlers for the endpoints of one :class:`Host`; the first part of the
    path names the endpoint."""

    def __init__(self, host: Host, api_key: str) -> None:
        self.host = host
        self.key = api_key.encode()
        # RunPod's limits are per endpoint.
        self.limiters = {
            eid: RateLimiter() for eid, ep in host.endpoints.items() if ep.opts.rate_limits
        }

    # ---- routing ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parts = request.match_info["tail"].split("/")
        ep = self.host.endpoints.get(parts[0])
        if ep is None or ep.opts.disabled or len(parts) < 2:
            return _json(NOT_FOUND, 404)
        name, args = parts[1], parts[2:]
        if name == "workers" and len(args) == 2 and args[1] == "logs":
            route, args = Route("GET", 1, "worker_logs"), args[:1]
        else:
            route = ROUTES.get(name)
        if route is None:
            return _json(NOT_FOUND, 404)
        if route.worker:
            return await self._worker_request(request, ep, name, route, args)
        if not self._authorized(request):
            return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
        if request.method != route.method:
            return _error(
                405,
                f"{request.method} is not allowed on {name}; use {route.method}",
                Allow=route.method,
            )
        if len(args) < route.nargs:
            return _error(404, f"{name} needs an id: {name}/<id>")
        if len(args) > route.nargs or not all(ID_RE.match(arg) for arg in args):
            return _error(400, "ids are 1-128 characters of letters, digits, '-' and '_'")
        limiter = self.limiters.get(ep.id)
        if limiter is not None:
            refusal = limiter.acquire(name)
            if refusal is not None:
                ep.requests["429"] += 1
                retry_after = str(limiter.retry_after(name))
                return _error(429, refusal, **{"Retry-After": retry_after})
        ep.requests[name] += 1
        try:
            return await getattr(self, route.handler)(request, ep, *args)
        except (BadInput, BadBody) as exc:
            return _error(exc.status, str(exc))
        finally:
            if limiter is not None:
                limiter.release(name)

    def _authorized(self, request: web.Request) -> bool:
        value = request.headers.get("Authorization", "")
        if value.startswith("Bearer "):
            value = value[7:]
        return bool(value) and hmac.compare_digest(value.strip().encode(), self.key)

    async def _worker_request(
        self, request: web.Request, ep: Endpoint, name: str, route: Route, args: list[str]
    ) -> web.StreamResponse:
        if request.method != route.method or len(args) != route.nargs:
            return _error(405 if request.method != route.method else 404, f"bad {name} request")
        key = request.headers.get("Authorization", "")
        # A worker is known to its own endpoint only: it takes that endpoint's jobs.
        w = ep.protocol.worker_for_key(args[0], key.removeprefix("Bearer ").strip())
        if w is None:
            # The SDK re-polls a refused job-take at once: slow it down so it cannot spin.
            await asyncio.sleep(1)
            return _error(401, "unknown worker or wrong worker key")
        ep.worker_requests[name] += 1
        return await getattr(self, route.handler)(request, ep, w, *args[1:])

    # ---- job API ---------------------------------------------------------------------

    async def _job_request(
        self, request: web.Request, ep: Endpoint, limit: int, what: str
    ) -> dict[str, Any]:
        too_large = f"{what} body is over {limit // MB} MB: send files as URLs"
        data = await read_json(request, limit, too_large)
        if not isinstance(data, dict):
            raise BadInput(400, "the body must be a JSON object with an 'input' object")
        if "input" not in data:
            raise BadInput(400, "missing 'input': send {\"input\": {...}}")
        if not isinstance(data["input"], dict):
            raise BadInput(400, "'input' must be a JSON object")
        webhook = data.get("webhook")
        if webhook is not None and (
            not isinstance(webhook, str) or not re.match(r"^https?://[^\s]+$", webhook)
        ):
            raise BadInput(400, "'webhook' must be an http(s) URL")
        return {
            "input": data["input"],
            "webhook": webhook,
            "policy": _policy(ep, data.get("policy")),
            "s3Config": _s3_config(data.get("s3Config")),
        }

    async def run(self, request: web.Request, ep: Endpoint) -> web.Response:
        received = time.perf_counter()
        payload = await self._job_request(request, ep, RUN_LIMIT, "/run")
        job = ep.submit(payload, sync=False, received=received)
        # A waiting worker may already hold it; the answer describes the acceptance.
        return _json({"id": job.id, "status": IN_QUEUE})

    async def runsync(self, request: web.Request, ep: Endpoint) -> web.Response:
        received = time.perf_counter()
        wait = request.query.get("wait", "90000")
        try:
            wait_ms = min(300_000, max(1000, int(wait)))
        except ValueError:
            raise BadInput(400, "wait must be a number of milliseconds") from None
        payload = await self._job_request(request, ep, RUNSYNC_LIMIT, "/runsync")
        job = ep.submit(payload, sync=True, received=received)
        await ep.wait_done(job, wait_ms / 1000)
        if job.terminal:
            job.timings["answered"] = time.perf_counter()
            return _json(job.payload())
        return _json({"id": job.id, "status": job.status})

    async def status(self, request: web.Request, ep: Endpoint, job_id: str) -> web.Response:
        return _json(_job(ep, job_id).payload())

    async def stream(self, request: web.Request, ep: Endpoint, job_id: str) -> web.Response:
        job = _job(ep, job_id)
        chunks = job.stream[job.stream_pos :]
        job.stream_pos = len(job.stream)
        return _json(
            {"id": job.id, "status": job.status, "stream": [{"output": c} for c in chunks]}
        )

    async def cancel(self, request: web.Request, ep: Endpoint, job_id: str) -> web.Response:
        job = _job(ep, job_id)
        ep.cancel(job)
        return _json({"id": job.id, "status": job.status})

    async def retry(self, request: web.Request, ep: Endpoint, job_id: str) -> web.Response:
        job = _job(ep, job_id)
        if not ep.retry(job):
            raise BadInput(
                400, f"only FAILED or TIMED_OUT jobs can be retried; this one is {job.status}"
            )
        return _json({"id": job.id, "status": IN_QUEUE})

    async def purge_queue(self, request: web.Request, ep: Endpoint) -> web.Response:
        return _json({"removed": ep.purge_queue(), "status": "completed"})

    async def health(self, request: web.Request, ep: Endpoint) -> web.Response:
        return _json(ep.health())

    async def workers(self, request: web.Request, ep: Endpoint) -> web.Response:
        return _json(ep.describe_workers())

    async def worker_logs(self, request: web.Request, ep: Endpoint, worker_id: str) -> web.Response:
        try:
            lines = int(request.query.get("lines", "100"))
        except ValueError:
            raise BadInput(400, "lines must be a whole number") from None
        lines = max(0, min(lines, 5000))
        path = ep.log_dir / f"{worker_id}.log"
        if worker_id not in ep.workers and not path.is_file():
            raise BadInput(404, f"no worker {worker_id}")
        return _json({"workerId": worker_id, "lines": wk.tail(path, lines, 4 * MB)})

    async def billing(self, request: web.Request, ep: Endpoint) -> web.Response:
        """Extension: each worker's billed life and the seconds attributed to jobs."""
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            raise BadInput(400, "since must be a Unix time in seconds") from None
        if not 0 <= since < 1e11:
            raise BadInput(400, "since must be a Unix time in seconds")
        return _json(ep.bill(since))

    async def stats(self, request: web.Request, ep: Endpoint) -> web.Response:
        return _json(ep.stats())

    # ---- worker protocol -------------------------------------------------------------

    async def job_take(
        self, request: web.Request, ep: Endpoint, w: wk.Worker
    ) -> web.StreamResponse:
        jobs = await ep.protocol.take(w, 1, job_in_progress=_in_progress(request))
        if not jobs:
            return web.Response(status=204)
        jobs[0].timings["handed"] = time.perf_counter()
        return _json(jobs[0].for_worker())

    async def job_take_batch(
        self, request: web.Request, ep: Endpoint, w: wk.Worker
    ) -> web.StreamResponse:
        try:
            size = max(1, min(int(request.query.get("batch_size", "1")), 100))
        except ValueError:
            return _error(400, "batch_size must be a whole number")
        jobs = await ep.protocol.take(w, size, job_in_progress=_in_progress(request))
        if not jobs:
            return web.Response(status=204)
        now = time.perf_counter()
        for job in jobs:
            job.timings["handed"] = now
        return _json([j.for_worker() for j in jobs])

    async def job_stop(
        self, request: web.Request, ep: Endpoint, w: wk.Worker
    ) -> web.StreamResponse:
        ids = await ep.protocol.wait_stop_signals(w)
        if not ids:
            return web.Response(status=204)
        return _json({"jobsToStop": ids})

    async def _worker_body(self, request: web.Request) -> Any:
        # Over the limit RunPod answers the worker's job-done 400 and the job fails
        # (runpod-workers/worker-comfyui#129).
        raw = await read_limited(
            request, RESULT_LIMIT, "result over 20 MB: upload it and return a URL", 400
        )
        return parse_json(raw, "result body") if raw else {}

    async def job_done(
        self, request: web.Request, ep: Endpoint, w: wk.Worker, job_id: str
    ) -> web.Response:
        try:
            body = await self._worker_body(request)
        except BadBody as exc:
            job = ep.get(job_id)
            if job is not None and job.worker_id == w.id and job.status == IN_PROGRESS:
                ep.protocol.job_done(w, job_id, {"error": str(exc)})
            return _error(exc.status, str(exc))
        ep.protocol.job_done(w, job_id, body)
        return _json({"ok": True})

    async def job_stream(
        self, request: web.Request, ep: Endpoint, w: wk.Worker, job_id: str
    ) -> web.Response:
        try:
            body = await self._worker_body(request)
        except BadBody as exc:
            return _error(exc.status, str(exc))
        ep.protocol.job_stream(w, job_id, body)
        return _json({"ok": True})

    async def ping(self, request: web.Request, ep: Endpoint, w: wk.Worker) -> web.Response:
        ep.protocol.ping(w, dict(request.query))
        return _json({"ok": True})


def _policy(ep: Endpoint, policy: Any) -> dict[str, Any] | None:
    """RunPod's bounds: executionTimeout 5 s to 7 days, ttl 10 s to 7 days."""
    if policy is None:
        return None
    if not isinstance(policy, dict):
        raise BadInput(400, "'policy' must be a JSON object")
    opts = ep.opts
    minimums = {
        "executionTimeout": int(opts.min_execution_timeout * 1000),
        "ttl": int(opts.min_ttl * 1000),
    }
    for key, minimum in minimums.items():
        value = policy.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadInput(400, f"policy.{key} must be an integer number of ms")
        if not minimum <= value <= MAX_POLICY_MS:
            raise BadInput(
                400,
                f"policy.{key} must be between {minimum} ms and {MAX_POLICY_MS} ms "
                f"(7 days); got {value}",
            )
    low = policy.get("lowPriority")
    if low is not None and not isinstance(low, bool):
        raise BadInput(400, "policy.lowPriority must be true or false")
    return policy


def _job(ep: Endpoint, job_id: str) -> Job:
    job = ep.get(job_id)
    if job is None:
        raise BadInput(404, "request does not exist")
    return job


def _in_progress(request: web.Request) -> bool:
    """The SDK's ``job_in_progress``: 1 while it holds any job; missing counts as 1."""
    return request.query.get("job_in_progress", "1") != "0"


async def not_found(request: web.Request) -> web.Response:
    return _json(NOT_FOUND, 404)


def build_app(host: Host, api_key: str) -> web.Application:
    api = Api(host, api_key)
    application = web.Application(client_max_size=RUNSYNC_LIMIT + MB)
    application.router.add_route("*", "/v2/{tail:.*}", api.handle)
    application.router.add_route("*", "/{tail:.*}", not_found)
    return application
