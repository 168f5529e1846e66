"""``python -m bench chaos``: the whole stack under injected faults, every job checked.

Starts the stack on embedded defaults (a private Redis, the local endpoint with real runpod
SDK workers running the echo pipeline, gunicorn, a Celery worker and beat), with a fault
proxy between the app and the endpoint, keeps a few jobs in flight through the upload form
(echo sleeping 2-5 s, so kills land mid-inference) and injects faults of every kind:

- SIGKILL of the Celery worker's pool process, and of its whole process group;
- Redis killed and restarted (its data gone: a flushed broker);
- SIGKILL of the local endpoint (and so its GPU workers), and of one GPU worker mid-model;
- SIGKILL and SIGTERM of the web server in the middle of an upload;
- the proxy answering 503, hanging, answering Not Found, 500 before forwarding, or 429, for
  a few seconds, or forwarding a POST /run and losing its answer;
- a web outage of ``--outage-s`` seconds while jobs run;
- concurrent reconcile sweeps.

A fault counts as a hit only when it struck something in flight: a GPU worker kill only
when that worker was inside a model run (the execution ledger says so, before and after
the kill), an endpoint kill only while the endpoint held a job, a kill mid-upload only
while the upload's POST was unanswered, a proxy fault only when it misbehaved on at least
one request (a lost ``/run`` answer only when a submit passed), the other kinds only while
the app had jobs in flight. Each fault aims for up to ``AIM_S`` seconds and is issued
anyway if nothing came; the run goes on until every kind has hit ``--min-each`` times and
``--faults`` faults have hit in all (or ``--max-s`` has passed, which the report says).

Executions are counted from the worker's side: each GPU worker appends a line when its
model starts and finishes to the ledger named by ``EXECUTION_LEDGER`` (``gpu_worker.ledger``).
From it, per configuration:

- executed twice (worker side): an attempt whose model finished more than once, or started
  under two RunPod job ids (invariant 3 says the second one must end without running);
- GPU runs repeated after a worker kill: a RunPod job whose model started more than once
  (RunPod runs a job again when its worker died): GPU time paid again, reported apart;
- lost: an accepted upload without its row, or a job shown COMPLETED whose model never
  finished on any worker (its result would be made up);
- wrongly failed (any job not COMPLETED: every fault is recoverable), left non-terminal,
  orphan files.

    python -m bench chaos                       # 4 configurations, >= 5 hits of each kind
    python -m bench chaos --backends sqlite --webhooks off --min-each 2 --faults 20
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import requests
from sqlalchemy import create_engine, text

from deploy.local.store import Store
from deploy.runpod.vocabulary import TERMINAL
from deploy.stack.database import postgres_schema
from deploy.stack.net import free_port
from deploy.stack.processes import alive_pids, command_line, descendants

PROXY_MODES = ("503", "hang", "404", "lost", "500", "429")
KINDS = (
    "celery_pool_sigkill",
    "celery_group_sigkill",
    "redis_restart",
    "endpoint_sigkill",
    "gpu_worker_sigkill",
    "web_sigkill_mid_upload",
    "web_sigterm_mid_upload",
    "web_outage",
    "concurrent_reconciles",
    *(f"proxy_{mode}" for mode in PROXY_MODES),
)
# How long a fault waits for something in flight to strike before it is issued anyway.
AIM_S = 15.0
# Echo's sleep: long enough that a kill lands mid-inference, short enough for many jobs.
JOB_SLEEP_S = (2.0, 5.0)
FAST = {
    "POLL_BASE_S": "0.5",
    "POLL_CAP_S": "3",
    "RECONCILE_INTERVAL_S": "2",
    "SUBMIT_GRACE_S": "3",
    "UNKNOWN_SUBMIT_GRACE_S": "4",
    "UNKNOWN_SUBMIT_MAX_S": "20",
    "QUEUE_DIAGNOSE_AFTER_S": "5",
    "UPLOAD_RATE_PER_HOUR": "0",
    "LOG_LEVEL": "INFO",
}
WORKER_ENV = {"TRANSFER_BACKOFF_S": "0.5", "TRANSFER_DEADLINE_S": "240"}
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64


class FaultProxy:
    """Forwards the app's job-API calls to the endpoint, or misbehaves for a while and
    counts the requests it misbehaved on (``hits``)."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.mode = "pass"
        self.until = 0.0
        self.hits = 0
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v2"
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def misbehave(self, mode: str, seconds: float) -> None:
        with self._lock:
            self.mode, self.until, self.hits = mode, time.monotonic() + seconds, 0

    def heal(self) -> None:
        with self._lock:
            self.mode = "pass"

    def current(self) -> str:
        with self._lock:
            if self.mode != "pass" and time.monotonic() > self.until:
                self.mode = "pass"
            return self.mode

    def _struck(self, mode: str) -> bool:
        """Count one request misbehaved on, unless the fault ended meanwhile. A lost answer
        is one-shot: the fault ends with the first /run it swallows."""
        with self._lock:
            if self.mode != mode:
                return False
            self.hits += 1
            if mode == "lost":
                self.mode = "pass"
            return True

    def __enter__(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                mode = proxy.current()
                canned = {
                    "503": (503, b'{"error": "service unavailable"}'),
                    "429": (429, b'{"error": "rate limited"}'),
                    "404": (404, b"Not Found"),
                    "500": (500, b'{"error": "internal"}'),
                }
                if mode in canned and proxy._struck(mode):
                    return self._answer(*canned[mode])
                if mode == "hang" and proxy._struck(mode):
                    time.sleep(12)
                    self.close_connection = True
                    return None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "content-type")
                }
                try:
                    resp = requests.request(
                        self.command,
                        proxy.target + self.path.removeprefix("/v2"),
                        data=body,
                        headers=headers,
                        timeout=30,
                    )
                except requests.RequestException:
                    self.close_connection = True
                    return None
                if mode == "lost" and self.path.endswith("/run") and proxy._struck(mode):
                    self.close_connection = True  # forwarded; the answer never comes back
                    return None
                return self._answer(resp.status_code, resp.content)

            do_GET = _forward  # noqa: N815
            do_POST = _forward  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """The GPU workers' execution ledger (``gpu_worker.ledger``): one dict per line."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        with contextlib.suppress(ValueError):  # a line cut by a kill (never seen; cheap)
            entries.append(json.loads(line))
    return entries


def open_runs(entries: list[dict[str, Any]]) -> set[tuple[int, str]]:
    """(pid, RunPod id) of model runs started and not finished."""
    runs: set[tuple[int, str]] = set()
    for entry in entries:
        key = (entry["pid"], entry["runpod_id"])
        if entry["event"] == "start":
            runs.add(key)
        else:
            runs.discard(key)
    return runs


def executions(
    entries: list[dict[str, Any]], requeued: dict[str, int] | None = None
) -> dict[str, Any]:
    """The worker-side counts of one configuration's ledger. ``requeued``: how many times
    the endpoint ran each RunPod job again because its worker died (its own record)."""
    requeued = requeued or {}
    finishes: Counter = Counter()
    started_under: defaultdict[Any, set[str]] = defaultdict(set)
    starts_per_runpod_id: Counter = Counter()
    finishes_per_runpod_id: Counter = Counter()
    job_of: dict[Any, str] = {}
    finished_jobs: Counter = Counter()
    for entry in entries:
        attempt = (entry["job_key"], entry["attempt"])
        job_of[attempt] = entry["job_key"]
        if entry["event"] == "start":
            started_under[attempt].add(entry["runpod_id"])
            starts_per_runpod_id[entry["runpod_id"]] += 1
        else:
            finishes[attempt] += 1
            finishes_per_runpod_id[entry["runpod_id"]] += 1
    twice = {a for a, n in finishes.items() if n > 1}
    twice |= {a for a, ids in started_under.items() if len(ids) > 1}
    # RunPod ran the same job again because its worker died after the model finished but
    # before the result reached the endpoint: the claim lets a job's own re-run through
    # (it cannot tell that death from one mid-model). Invariant 3 is about a second RunPod
    # job for one attempt, so those are counted apart; anything else is a break.
    rerun_after_finish = {
        rid for rid, n in finishes_per_runpod_id.items() if n > 1 and n <= requeued.get(rid, 0) + 1
    }
    broken = {
        a for a in twice if len(started_under[a]) > 1 or not started_under[a] <= rerun_after_finish
    }
    for attempt in finishes:
        finished_jobs[job_of[attempt]] += 1
    repeated = {rid: n for rid, n in starts_per_runpod_id.items() if n > 1}
    return {
        "finished_jobs": finished_jobs,
        "twice": sorted(twice, key=str),
        "broken": sorted(broken, key=str),
        "rerun_after_finish": sorted(rerun_after_finish),
        "repeated": repeated,
        "starts": sum(starts_per_runpod_id.values()),
        "finishes": sum(finishes.values()),
        # An app job whose model finished in two attempts: a retry after a failure (an
        # attempt the app gave up on) re-ran it; not an invariant break, but GPU time.
        "several_attempts": sorted(j for j, n in finished_jobs.items() if n > 1),
    }


def _wait_for(predicate: Callable[[], Any], seconds: float = AIM_S) -> Any:
    """Poll ``predicate`` until it returns something truthy or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@dataclass
class Run:
    """One configuration's stack and what happened to it."""

    work: Path
    env: dict[str, str]
    redis: Any
    endpoint: Any
    proxy: FaultProxy
    web: Any
    worker: Any
    beat: Any
    ledger: Path
    issued: Counter = field(default_factory=Counter)
    hit: Counter = field(default_factory=Counter)
    not_injected: Counter = field(default_factory=Counter)
    jobs: list[str] = field(default_factory=list)
    upload_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    web_down: threading.Event = field(default_factory=threading.Event)
    # Held while a fault runs: the supervisor restarts only what died on its own.
    fault_lock: threading.Lock = field(default_factory=threading.Lock)
    exits: Counter = field(default_factory=Counter)
    _engine: Any = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = create_engine(self.env["DATABASE_URL"])
        return self._engine

    def rows(self) -> dict[str, tuple[str, str | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status, error FROM jobs")).all()
        return {row[0]: (row[1], row[2]) for row in rows}

    def in_flight(self) -> list[str]:
        """The app's jobs not yet terminal."""
        return [job for job, (status, _) in self.rows().items() if status not in TERMINAL]

    def upload(
        self,
        body: bytes = VIDEO,
        sleep_s: float = 0.0,
        timeout: float = 60,
        posting: threading.Event | None = None,
        pace_s: float = 0.0,
    ) -> None:
        """Upload one job through the form; a refused or cut-off upload creates no job.
        ``posting`` is set when the form's POST starts; with ``pace_s`` its body goes out in
        256 KiB pieces that far apart, so a kill can land mid-body."""
        if self.web_down.is_set():
            return
        session = requests.Session()
        try:
            page = session.get(self.web.url("/"), timeout=10).text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            request = session.prepare_request(
                requests.Request(
                    "POST",
                    self.web.url("/jobs"),
                    data={"csrf_token": token, "pipeline": "echo", "param.sleep_s": str(sleep_s)},
                    files={"file": ("clip.mp4", body, "video/mp4")},
                )
            )
            if posting is not None:
                posting.set()
            status, location = _post_paced(request, timeout, pace_s)
        except (OSError, http.client.HTTPException, requests.RequestException, AttributeError):
            with self.lock:
                self.upload_errors += 1
            return
        finally:
            session.close()
        with self.lock:
            if status == 303:
                self.jobs.append(location.rsplit("/", 1)[1])
            else:
                self.upload_errors += 1

    def gpu_workers(self) -> set[int]:
        pids = descendants(self.endpoint.process.pid)
        return {pid for pid in alive_pids(pids) if "gpu_worker" in command_line(pid)}

    def busy_workers(self) -> list[tuple[int, str]]:
        """(pid, RunPod id) of live GPU workers inside a model run now."""
        live = self.gpu_workers()
        return sorted(r for r in open_runs(read_ledger(self.ledger)) if r[0] in live)

    def endpoint_busy(self) -> bool:
        try:
            jobs = self.endpoint.get("health").json()["jobs"]
        except (requests.RequestException, ValueError, KeyError):
            return False
        return jobs["inQueue"] + jobs["inProgress"] > 0


def _post_paced(request: requests.PreparedRequest, timeout: float, pace_s: float) -> tuple:
    """Send ``request``'s body in pieces ``pace_s`` apart; its status and Location."""
    url = urlsplit(request.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.putrequest("POST", f"{url.path}?{url.query}" if url.query else url.path)
        for name, value in request.headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        piece = 256 * 1024
        for start in range(0, len(body), piece):
            conn.send(body[start : start + piece])
            if pace_s:
                time.sleep(pace_s)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Location") or ""
    finally:
        conn.close()


# The faults: each returns whether it struck something in flight.


def _restart_web(run: Run) -> None:
    run.web.process.stop(timeout=1)
    run.web.process.start()
    run.web.wait_ready(timeout=60)


def _kill_celery_pool(run: Run) -> bool:
    hit = bool(_wait_for(run.in_flight))
    children = psutil.Process(run.worker.process.pid).children()
    if children:
        random.choice(children).kill()
    else:
        run.worker.kill()
        run.worker.restart()
    return hit


def _kill_celery_group(run: Run) -> bool:
    hit = bool(_wait_for(run.in_flight))
    run.worker.kill()
    run.worker.restart()
    return hit


def _kill_redis(run: Run) -> bool:
    hit = bool(_wait_for(run.in_flight))
    process = run.redis.process
    process.kill()
    time.sleep(random.uniform(0.5, 2.0))
    process.start()
    process.wait_for_port(int(run.redis.url.rsplit(":", 1)[1].split("/")[0]), timeout=15)
    return hit


def _kill_endpoint(run: Run) -> bool:
    hit = bool(_wait_for(run.endpoint_busy))
    run.endpoint.kill()
    time.sleep(random.uniform(0.2, 1.5))
    run.endpoint.start()
    return hit


def _kill_gpu_worker(run: Run) -> bool:
    # A random moment first, so kills spread over the model's whole run; then a worker
    # inside a model run now, killed at once (a kill after the model finished would be
    # another fault: a worker dying while it delivers).
    time.sleep(random.uniform(0, 1.0))
    busy = _wait_for(run.busy_workers)
    if not busy:
        workers = sorted(run.gpu_workers())
        if workers:
            with contextlib.suppress(psutil.Error):
                psutil.Process(random.choice(workers)).kill()
        return False
    pid, runpod_id = random.choice(busy)
    try:
        psutil.Process(pid).kill()
    except psutil.Error:
        return False
    return (pid, runpod_id) in open_runs(read_ledger(run.ledger))


def _web_mid_upload(run: Run, sig: int) -> bool:
    big = VIDEO + os.urandom(8 * 1024 * 1024)
    posting = threading.Event()
    # 32 pieces 30 ms apart: about a second of body for the signal to land in.
    uploader = threading.Thread(
        target=run.upload, args=(big,), kwargs={"timeout": 30, "posting": posting, "pace_s": 0.03}
    )
    uploader.start()
    posting.wait(10)
    time.sleep(random.uniform(0.05, 0.8))
    hit = posting.is_set() and uploader.is_alive()
    run.web.process.signal_group(sig)
    uploader.join()
    if sig == signal.SIGTERM:
        with contextlib.suppress(Exception):
            run.web.process.process.wait(timeout=10)
    _restart_web(run)
    return hit


def _proxy_fault(run: Run, mode: str) -> bool:
    _wait_for(run.in_flight)
    if mode == "lost":
        # Lose the answer of the next /run; the uploader keeps submits coming.
        run.proxy.misbehave(mode, AIM_S)
        _wait_for(lambda: run.proxy.hits, AIM_S)
    else:
        seconds = random.uniform(2.0, 6.0)
        run.proxy.misbehave(mode, seconds)
        time.sleep(seconds)
    run.proxy.heal()
    return run.proxy.hits > 0


def _concurrent_reconciles(run: Run) -> bool:
    from app import create_app
    from app.db import session_scope
    from app.lifecycle.reconcile import reconcile
    from app.services import services
    from app.settings import Settings

    hit = bool(_wait_for(run.in_flight))
    app = create_app(Settings.from_env(run.env), component="bench")

    def sweep() -> None:
        with app.app_context(), session_scope() as session:
            with contextlib.suppress(Exception):  # a sweep that loses a race is the next one
                reconcile(session, services())

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    app.extensions["db"].engine.dispose()
    return hit


def _web_outage(run: Run, seconds: float) -> bool:
    hit = bool(_wait_for(run.in_flight))
    run.web_down.set()
    run.web.process.stop(timeout=5)
    time.sleep(seconds)
    run.web.process.start()
    run.web.wait_ready(timeout=60)
    run.web_down.clear()
    return hit


def _faults(run: Run, outage_s: float) -> dict[str, Callable[[], bool]]:
    table: dict[str, Callable[[], bool]] = {
        "celery_pool_sigkill": lambda: _kill_celery_pool(run),
        "celery_group_sigkill": lambda: _kill_celery_group(run),
        "redis_restart": lambda: _kill_redis(run),
        "endpoint_sigkill": lambda: _kill_endpoint(run),
        "gpu_worker_sigkill": lambda: _kill_gpu_worker(run),
        "web_sigkill_mid_upload": lambda: _web_mid_upload(run, signal.SIGKILL),
        "web_sigterm_mid_upload": lambda: _web_mid_upload(run, signal.SIGTERM),
        "web_outage": lambda: _web_outage(run, outage_s),
        "concurrent_reconciles": lambda: _concurrent_reconciles(run),
    }
    for mode in PROXY_MODES:
        table[f"proxy_{mode}"] = lambda mode=mode: _proxy_fault(run, mode)
    return table


@contextlib.contextmanager
def _stack(work: Path, database_url: str, webhooks: bool, workers_max: int) -> Iterator[Run]:
    from deploy.stack.services import whole_stack

    extra = {**FAST, "USE_WEBHOOKS": "true" if webhooks else "false"}
    if database_url:
        extra["DATABASE_URL"] = database_url
    ledger = work / "executions.jsonl"
    options = {
        "workers_max": workers_max,
        "idle_timeout": 10,
        "webhook_retry_delay": 1,
        "env": {**WORKER_ENV, "EXECUTION_LEDGER": str(ledger)},
    }
    with whole_stack(
        work, endpoint_options=options, extra_env=extra, external_redis=False, between=FaultProxy
    ) as s:
        run = Run(work, s.env, s.redis, s.endpoint, s.front, s.web, s.worker, s.beat, ledger)
        try:
            yield run
        finally:
            if run._engine is not None:
                run._engine.dispose()


def _next_kind(run: Run, kinds: list[str], min_each: int) -> str:
    """Any kind still short of ``min_each`` hits, else any kind (never only the one with the
    fewest hits: a kind that cannot strike now must not hold up the others)."""
    return random.choice([k for k in kinds if run.hit[k] < min_each] or kinds)


def _supervise(run: Run, stop: threading.Event) -> None:
    """Restart a Celery worker or beat that exited when no fault was running, as a process
    supervisor does in production, and count it: an exit no fault asked for is a finding."""
    while not stop.wait(1.0):
        with run.fault_lock:
            for name, process in (("celery_worker", run.worker), ("celery_beat", run.beat)):
                if not process.process.alive():
                    cause = next(
                        (
                            line.split("CRITICAL", 1)[-1].strip()[:200]
                            for line in reversed(process.log_tail(200).splitlines())
                            if "Unrecoverable error" in line
                        ),
                        "no cause logged",
                    )
                    run.exits[f"{name}: {cause}"] += 1
                    _log(f"{name} exited on its own ({cause}); restarted")
                    with contextlib.suppress(Exception):
                        process.restart()


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} chaos: {message}", file=sys.stderr, flush=True)


def run_config(
    work: Path,
    *,
    database_url: str = "",
    webhooks: bool = True,
    faults: int = 75,
    min_each: int = 5,
    kinds: tuple[str, ...] = KINDS,
    in_flight: int = 4,
    outage_s: float = 15.0,
    max_s: float = 900.0,
    settle_s: float = 420.0,
    workers_max: int = 2,
    seed: int | None = None,
) -> dict[str, Any]:
    """One configuration: fault until ``faults`` hits and ``min_each`` of each kind, with
    about ``in_flight`` jobs open all along; then heal, let every job end, and check."""
    rng = random.Random(seed)
    random.seed(rng.random())
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    with _stack(work, database_url, webhooks, workers_max) as run:
        table = _faults(run, outage_s)
        stop = threading.Event()

        def uploader() -> None:
            while not stop.is_set():
                if run.web_down.is_set() or len(run.in_flight()) >= in_flight:
                    time.sleep(0.3)
                    continue
                refused = run.upload_errors
                run.upload(sleep_s=round(random.uniform(*JOB_SLEEP_S), 1))
                if run.upload_errors > refused:
                    time.sleep(0.5)  # the web server is restarting: do not hammer it

        feeder = threading.Thread(target=uploader)
        feeder.start()
        healthy = threading.Event()  # set once every job has ended: the supervisor stops
        supervisor = threading.Thread(target=_supervise, args=(run, healthy), daemon=True)
        supervisor.start()
        started = time.monotonic()
        try:
            while time.monotonic() - started < max_s:
                met = all(run.hit[k] >= min_each for k in kinds)
                if met and sum(run.hit.values()) >= faults:
                    break
                name = _next_kind(run, list(kinds), min_each)
                time.sleep(random.uniform(0.2, 1.0))
                run.issued[name] += 1
                with run.fault_lock:
                    try:
                        hit = table[name]()
                    except Exception as exc:  # noqa: BLE001 - a fault that could not be injected
                        run.not_injected[f"{name}:{type(exc).__name__}"] += 1
                        hit = False
                run.hit[name] += hit
                _log(f"{name}: {'hit' if hit else 'struck nothing in flight'}")
        finally:
            stop.set()
            feeder.join()
        faulting_s = time.monotonic() - started
        # Heal everything, then let beat, polls, webhooks and workers bring every job home.
        run.proxy.heal()
        with run.fault_lock:
            _ensure_up(run)
        deadline = time.monotonic() + settle_s
        try:
            while time.monotonic() < deadline and run.in_flight():
                time.sleep(2)
        finally:
            healthy.set()
            supervisor.join()
        before = _orphans(run)
        removed = _cleanup(run)
        result = _check(run, list(kinds), min_each, faults)
        result["faulting_s"] = round(faulting_s, 1)
        result["orphans_before_cleanup"] = len(before)
        result["orphans_removed_by_cleanup"] = removed
        return result


def _orphans(run: Run) -> list[str]:
    storage = Path(run.env["STORAGE_DIR"])
    rows = run.rows()
    staging = [p.name for p in (storage / ".staging").glob("*")]
    strays = [p.name for p in (storage / "jobs").glob("*") if p.is_dir() and p.name not in rows]
    return staging + strays


def _cleanup(run: Run) -> int:
    """The hourly cleanup, run now, with no upload in flight: files whose row never came
    (an upload killed between storing its file and committing its row) go at any age."""
    from app import create_app
    from app.db import session_scope
    from app.lifecycle.reconcile import cleanup
    from app.services import services
    from app.settings import Settings

    app = create_app(Settings.from_env(run.env), component="bench")
    try:
        with app.app_context(), session_scope() as session:
            done = cleanup(session, services(), orphan_age_s=0)
    finally:
        app.extensions["db"].engine.dispose()
    return done["orphans"]


def _ensure_up(run: Run) -> None:
    if not run.web.process.alive():
        _restart_web(run)
    if not run.worker.process.alive():
        run.worker.restart()
    if run.endpoint.process.poll() is not None:
        run.endpoint.start()


def _story(run: Run, job_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """What the app and the workers know of a job: for the report's details."""
    with run.engine.connect() as conn:
        job = conn.execute(
            text(
                "SELECT status, runpod_id, diagnosis, cancel_requested_at, next_poll_at, "
                "updated_at FROM jobs WHERE id = :id"
            ),
            {"id": job_id},
        ).one()
        attempts = conn.execute(
            text(
                "SELECT id, number, state, runpod_id, claimed_runpod_id, error FROM attempts "
                "WHERE job_id = :id ORDER BY number"
            ),
            {"id": job_id},
        ).all()
    return {
        "job": [str(v) for v in job],
        "attempts": [[str(v) for v in a] for a in attempts],
        "ledger": [
            [e["event"], e["attempt"], e["runpod_id"], e["pid"]]
            for e in entries
            if e["job_key"] == job_id
        ],
    }


def _endpoint_records(run: Run) -> list[dict[str, Any]]:
    """The endpoint's own job records, read through its store (which knows its schema)."""
    store = Store(run.endpoint.state_dir / "jobs.sqlite3")
    try:
        return store.load_jobs()
    finally:
        store.close()


def _check(run: Run, kinds: list[str], min_each: int, faults: int) -> dict[str, Any]:
    rows = run.rows()
    entries = read_ledger(run.ledger)
    records = _endpoint_records(run)
    counted = executions(entries, {r["id"]: r.get("requeues") or 0 for r in records})
    finished = counted["finished_jobs"]
    # Lost: an accepted upload without its row, or a job shown COMPLETED whose model never
    # finished on a GPU worker (its result would be made up).
    lost = [job for job in run.jobs if job not in rows]
    lost += [job for job, (st, _) in rows.items() if st == "COMPLETED" and not finished[job]]
    open_jobs = [job for job, (status, _) in rows.items() if status not in TERMINAL]
    # RunPod runs a job again once when its worker dies, and fails it when the second
    # worker dies too: with kills aimed at running jobs that happens, and FAILED is then the
    # right answer (the app cannot tell it from an input that kills every worker). Such
    # jobs are reported apart; any other failure is wrong, every fault being recoverable.
    died_twice = {
        (r["input"] or {}).get("job_key")
        for r in records
        if r["status"] == "FAILED" and (r.get("requeues") or 0) >= 1
    }
    failed = {
        job: error
        for job, (status, error) in rows.items()
        if status in TERMINAL and status != "COMPLETED" and job not in died_twice
    }
    killed_twice = [
        job for job, (status, _) in rows.items() if status == "FAILED" and job in died_twice
    ]
    twice_jobs = sorted({job for job, _ in counted["twice"]})
    broken_jobs = sorted({job for job, _ in counted["broken"]})
    orphans = _orphans(run)
    return {
        "faults_issued": sum(run.issued.values()),
        "faults_hit": sum(run.hit.values()),
        "minimum_met": all(run.hit[k] >= min_each for k in kinds)
        and sum(run.hit.values()) >= faults,
        "faults": {k: {"issued": run.issued[k], "hit": run.hit[k]} for k in kinds},
        "not_injected": dict(run.not_injected),
        # Exits no fault asked for (the supervisor restarted them): see _supervise.
        "unprompted_exits": dict(run.exits),
        "unprompted_exit_count": sum(run.exits.values()),
        # Rows, not answered uploads: an upload cut off after its row committed is a job.
        "jobs": len(rows),
        "uploads_answered": len(run.jobs),
        "uploads_refused_or_cut": run.upload_errors,
        "model_starts": counted["starts"],
        "model_finishes": counted["finishes"],
        "lost": len(lost),
        "executed_twice": len(twice_jobs),
        "executed_twice_by_two_runpod_jobs_or_no_death": len(broken_jobs),
        "rerun_after_model_finished": len(counted["rerun_after_finish"]),
        "repeated_gpu_runs": len(counted["repeated"]),
        "jobs_run_in_several_attempts": len(counted["several_attempts"]),
        "failed_wrongly": len(failed),
        "failed_after_two_worker_deaths": len(killed_twice),
        "left_non_terminal": len(open_jobs),
        "orphan_files": len(orphans),
        "details": {
            "lost": lost[:10],
            "failed": dict(list(failed.items())[:10]),
            "failed_after_two_worker_deaths": killed_twice[:10],
            "twice": {job: _story(run, job, entries) for job in twice_jobs[:5]},
            "repeated_gpu_runs": dict(list(counted["repeated"].items())[:10]),
            "several_attempts": {
                job: _story(run, job, entries) for job in counted["several_attempts"][:3]
            },
            "open": {job: _story(run, job, entries) for job in open_jobs[:5]},
            "orphans": orphans[:10],
        },
    }


COLUMNS = (
    ("faults_issued", "faults issued"),
    ("faults_hit", "faults that hit"),
    ("jobs", "jobs"),
    ("model_finishes", "model runs finished"),
    ("lost", "lost"),
    ("executed_twice", "executed twice (worker side)"),
    ("executed_twice_by_two_runpod_jobs_or_no_death", "  of which 2 RunPod jobs or no death"),
    ("rerun_after_model_finished", "  of which re-run: died after the model"),
    ("repeated_gpu_runs", "GPU runs repeated after a worker kill"),
    ("jobs_run_in_several_attempts", "jobs run again by a new attempt"),
    ("failed_wrongly", "wrongly failed"),
    ("failed_after_two_worker_deaths", "failed: its worker died twice (RunPod's rule)"),
    ("left_non_terminal", "left non-terminal"),
    ("orphan_files", "orphans"),
    ("unprompted_exit_count", "Celery exits no fault asked for"),
)
# What must be 0 for the run to pass. A RunPod job run again after its worker died (before
# or after its model finished) is reported, not failed on: RunPod does it, not the app.
MUST_BE_ZERO = (
    "lost",
    "executed_twice_by_two_runpod_jobs_or_no_death",
    "failed_wrongly",
    "left_non_terminal",
    "orphan_files",
)


def table(results: dict[str, dict[str, Any]]) -> str:
    """The per-kind issued/hit counts and the outcome figures, one column per configuration."""
    names = list(results)
    width = 2 + max(len(label) for _, label in COLUMNS)
    head = "".join(f"{n:>26}" for n in names) + f"{'total':>12}"
    lines = [f"{'':<{width}}{head}", f"{'fault (issued / hit)':<{width}}"]
    kinds = list(dict.fromkeys(k for r in results.values() for k in r["faults"]))
    for kind in kinds:
        cells = [r["faults"].get(kind, {"issued": 0, "hit": 0}) for r in results.values()]
        row = "".join(f"{c['issued']:>21} / {c['hit']:<2}" for c in cells)
        total = f"{sum(c['issued'] for c in cells)} / {sum(c['hit'] for c in cells)}"
        lines.append(f"  {kind:<{width - 2}}{row}{total:>12}")
    for key, label in COLUMNS:
        row = "".join(f"{r[key]:>26}" for r in results.values())
        lines.append(f"{label:<{width}}{row}{sum(r[key] for r in results.values()):>12}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench chaos", description=__doc__)
    parser.add_argument("--faults", type=int, default=75, help="hits per configuration")
    parser.add_argument("--min-each", type=int, default=5, help="hits of each kind")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--in-flight", type=int, default=4, help="jobs kept open")
    parser.add_argument("--outage-s", type=float, default=15.0, help="each web outage")
    parser.add_argument("--max-s", type=float, default=900.0, help="faulting time cap")
    parser.add_argument("--settle-s", type=float, default=420.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--webhooks", default="on,off")
    parser.add_argument(
        "--configs", default="", help="instead of backends x webhooks: sqlite:off,postgresql:on"
    )
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "true")
    os.environ.setdefault("RUNPOD_SKIP_GPU_CHECK", "true")
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"--kinds: unknown {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")
    if args.configs:
        configs = [tuple(c.split(":", 1)) for c in args.configs.split(",")]
    else:
        configs = [(b, h) for b in args.backends.split(",") for h in args.webhooks.split(",")]
    for config in configs:
        if config[0] not in ("sqlite", "postgresql") or config[1:] not in (("on",), ("off",)):
            parser.error(f"{':'.join(config)}: expected sqlite|postgresql with webhooks on|off")
    results: dict[str, Any] = {}
    for backend, hooks in configs:
        name = f"{backend}, webhooks {hooks}"
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp, contextlib.ExitStack() as es:
            url = ""
            if backend == "postgresql":
                url = es.enter_context(postgres_schema(args.postgres))
            started = time.monotonic()
            results[name] = run_config(
                Path(tmp),
                database_url=url,
                webhooks=hooks == "on",
                faults=args.faults,
                min_each=args.min_each,
                kinds=kinds,
                in_flight=args.in_flight,
                outage_s=args.outage_s,
                max_s=args.max_s,
                settle_s=args.settle_s,
                seed=args.seed,
            )
            results[name]["seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps({name: results[name]}, indent=2), flush=True)
    print(table(results))
    bad = any(r[col] for r in results.values() for col in MUST_BE_ZERO)
    short = not all(r["minimum_met"] for r in results.values())
    return 1 if bad or short else 0
