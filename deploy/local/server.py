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
from deploy.local.endpoint import Endpoint
from deploy.local.jobs import IN_PROGRESS, IN_QUEUE, Job

MB = 1024 * 1024
RUN_LIMIT = 10 * MB
RUNSYNC_LIMIT = 20 * MB
RESULT_LIMIT = 20 * MB
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
MAX_POLICY_MS = 7 * 24 * 3600 * 1000
NOT_FOUND = {"message": "Not Found"}

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
    "job-take": Route("GET", 1, "job_take", worker=True),
    "job-take-batch": Route("GET", 1, "job_take_batch", worker=True),
    "job-stop": Route("GET", 1, "job_stop", worker=True),
    "job-done": Route("POST", 2, "job_done", worker=True),
    "job-stream": Route("POST", 2, "job_stream", worker=True),
    "ping": Route("GET", 1, "ping", worker=True),
}


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
    """Request handlers bound to one :class:`Endpoint`."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.ep = endpoint
        self.key = endpoint.opts.api_key.encode()

    # ---- routing ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        opts = self.ep.opts
        if opts.disabled:
            return _json(NOT_FOUND, 404)
        parts = request.match_info["tail"].split("/")
        if parts[0] != opts.endpoint_id or len(parts) < 2:
            return _json(NOT_FOUND, 404)
        name, args = parts[1], parts[2:]
        if name == "workers" and len(args) == 2 and args[1] == "logs":
            route, args = Route("GET", 1, "worker_logs"), args[:1]
        else:
            route = ROUTES.get(name)
        if route is None:
            return _json(NOT_FOUND, 404)
        if route.worker:
            return await self._worker_request(request, name, route, args)
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
        self.ep.requests[name] += 1
        try:
            return await getattr(self, route.handler)(request, *args)
        except BadInput as exc:
            return _error(exc.status, str(exc))

    def _authorized(self, request: web.Request) -> bool:
        value = request.headers.get("Authorization", "")
        if value.startswith("Bearer "):
            value = value[7:]
        return bool(value) and hmac.compare_digest(value.strip().encode(), self.key)

    async def _worker_request(
        self, request: web.Request, name: str, route: Route, args: list[str]
    ) -> web.StreamResponse:
        if request.method != route.method or len(args) != route.nargs:
            return _error(405 if request.method != route.method else 404, f"bad {name} request")
        key = request.headers.get("Authorization", "")
        w = self.ep.worker_for_key(args[0], key.removeprefix("Bearer ").strip())
        if w is None:
            # The SDK re-polls a refused job-take at once: slow it down so it cannot spin.
            await asyncio.sleep(1)
            return _error(401, "unknown worker or wrong worker key")
        self.ep.worker_requests[name] += 1
        return await getattr(self, route.handler)(request, w, *args[1:])

    # ---- job API ---------------------------------------------------------------------

    async def _body(self, request: web.Request, limit: int, what: str) -> Any:
        if request.content_length is not None and request.content_length > limit:
            raise BadInput(413, f"{what} body is over {limit // MB} MB: send files as URLs")
        raw = await request.content.read(limit + 1)
        if len(raw) > limit:
            raise BadInput(413, f"{what} body is over {limit // MB} MB: send files as URLs")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadInput(400, f"request body is not valid JSON ({exc})") from None

    async def _job_request(self, request: web.Request, limit: int, what: str) -> dict[str, Any]:
        data = await self._body(request, limit, what)
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
        policy = data.get("policy")
        if policy is not None:
            if not isinstance(policy, dict):
                raise BadInput(400, "'policy' must be a JSON object")
            for key in ("executionTimeout", "ttl"):
                value = policy.get(key)
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, int):
                    raise BadInput(400, f"policy.{key} must be an integer number of ms")
                if not 1000 <= value <= MAX_POLICY_MS:
                    raise BadInput(400, f"policy.{key} must be between 1000 ms and 7 days")
        return {"input": data["input"], "webhook": webhook, "policy": policy}

    async def run(self, request: web.Request) -> web.Response:
        received = time.perf_counter()
        payload = await self._job_request(request, RUN_LIMIT, "/run")
        job = self.ep.submit(payload, sync=False, received=received)
        # A waiting worker may already hold it; the answer describes the acceptance.
        return _json({"id": job.id, "status": IN_QUEUE})

    async def runsync(self, request: web.Request) -> web.Response:
        received = time.perf_counter()
        wait = request.query.get("wait", "90000")
        try:
            wait_ms = min(300_000, max(1000, int(wait)))
        except ValueError:
            raise BadInput(400, "wait must be a number of milliseconds") from None
        payload = await self._job_request(request, RUNSYNC_LIMIT, "/runsync")
        job = self.ep.submit(payload, sync=True, received=received)
        await self.ep.wait_done(job, wait_ms / 1000)
        if job.terminal:
            job.timings["answered"] = time.perf_counter()
            return _json(job.payload())
        return _json({"id": job.id, "status": job.status})

    def _job(self, job_id: str) -> Job:
        job = self.ep.get(job_id)
        if job is None:
            raise BadInput(404, "request does not exist")
        return job

    async def status(self, request: web.Request, job_id: str) -> web.Response:
        return _json(self._job(job_id).payload())

    async def stream(self, request: web.Request, job_id: str) -> web.Response:
        job = self._job(job_id)
        chunks = job.stream[job.stream_pos :]
        job.stream_pos = len(job.stream)
        return _json(
            {"id": job.id, "status": job.status, "stream": [{"output": c} for c in chunks]}
        )

    async def cancel(self, request: web.Request, job_id: str) -> web.Response:
        job = self._job(job_id)
        self.ep.cancel(job)
        return _json({"id": job.id, "status": job.status})

    async def retry(self, request: web.Request, job_id: str) -> web.Response:
        job = self._job(job_id)
        if not self.ep.retry(job):
            raise BadInput(
                400, f"only FAILED or TIMED_OUT jobs can be retried; this one is {job.status}"
            )
        return _json({"id": job.id, "status": IN_QUEUE})

    async def purge_queue(self, request: web.Request) -> web.Response:
        return _json({"removed": self.ep.purge_queue(), "status": "completed"})

    async def health(self, request: web.Request) -> web.Response:
        return _json(self.ep.health())

    async def workers(self, request: web.Request) -> web.Response:
        return _json(self.ep.describe_workers())

    async def worker_logs(self, request: web.Request, worker_id: str) -> web.Response:
        try:
            lines = int(request.query.get("lines", "100"))
        except ValueError:
            raise BadInput(400, "lines must be a whole number") from None
        lines = max(0, min(lines, 5000))
        path = self.ep.log_dir / f"{worker_id}.log"
        if worker_id not in self.ep.workers and not path.is_file():
            raise BadInput(404, f"no worker {worker_id}")
        return _json({"workerId": worker_id, "lines": wk.tail(path, lines, 4 * MB)})

    async def stats(self, request: web.Request) -> web.Response:
        return _json(
            {
                "requests": dict(self.ep.requests),
                "workerRequests": dict(self.ep.worker_requests),
                "jobs": {k: v for k, v in self.ep.counts.items() if v},
                "workers": {"started": self.ep.workers_started, "peak": self.ep.workers_peak},
            }
        )

    # ---- worker protocol -------------------------------------------------------------

    async def job_take(self, request: web.Request, w: wk.Worker) -> web.StreamResponse:
        jobs = await self.ep.take(w, 1)
        if not jobs:
            return web.Response(status=204)
        jobs[0].timings["handed"] = time.perf_counter()
        return _json({"id": jobs[0].id, "input": jobs[0].input})

    async def job_take_batch(self, request: web.Request, w: wk.Worker) -> web.StreamResponse:
        try:
            size = max(1, min(int(request.query.get("batch_size", "1")), 100))
        except ValueError:
            return _error(400, "batch_size must be a whole number")
        jobs = await self.ep.take(w, size)
        if not jobs:
            return web.Response(status=204)
        now = time.perf_counter()
        for job in jobs:
            job.timings["handed"] = now
        return _json([{"id": j.id, "input": j.input} for j in jobs])

    async def job_stop(self, request: web.Request, w: wk.Worker) -> web.StreamResponse:
        ids = await self.ep.wait_stop_signals(w)
        if not ids:
            return web.Response(status=204)
        return _json({"jobsToStop": ids})

    async def _worker_body(self, request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > RESULT_LIMIT:
            raise BadInput(400, "result over 20 MB: upload it and return a URL")
        raw = await request.content.read(RESULT_LIMIT + 1)
        if len(raw) > RESULT_LIMIT:
            raise BadInput(400, "result over 20 MB: upload it and return a URL")
        try:
            return json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            raise BadInput(400, "result body is not JSON") from None

    async def job_done(self, request: web.Request, w: wk.Worker, job_id: str) -> web.Response:
        try:
            body = await self._worker_body(request)
        except BadInput as exc:
            job = self.ep.get(job_id)
            if job is not None and job.worker_id == w.id and job.status == IN_PROGRESS:
                self.ep.job_done(w, job_id, {"error": str(exc)}, False)
            return _error(exc.status, str(exc))
        is_stream = request.query.get("isStream") == "true"
        self.ep.job_done(w, job_id, body, is_stream)
        return _json({"ok": True})

    async def job_stream(self, request: web.Request, w: wk.Worker, job_id: str) -> web.Response:
        try:
            body = await self._worker_body(request)
        except BadInput as exc:
            return _error(exc.status, str(exc))
        self.ep.job_stream(w, job_id, body)
        return _json({"ok": True})

    async def ping(self, request: web.Request, w: wk.Worker) -> web.Response:
        self.ep.ping(w, dict(request.query))
        return _json({"ok": True})


async def not_found(request: web.Request) -> web.Response:
    return _json(NOT_FOUND, 404)


def build_app(endpoint: Endpoint) -> web.Application:
    api = Api(endpoint)
    application = web.Application(client_max_size=RUNSYNC_LIMIT + MB)
    application.router.add_route("*", "/v2/{tail:.*}", api.handle)
    application.router.add_route("*", "/{tail:.*}", not_found)
    return application
