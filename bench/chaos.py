"""``python -m bench chaos``: the whole stack under injected faults, every job checked.

Starts the stack on embedded defaults (a private Redis, the local endpoint with real runpod
SDK workers running the echo pipeline, gunicorn, a Celery worker and beat), with a fault
proxy between the app and the endpoint, uploads jobs through the form and, at random
moments, injects faults:

- SIGKILL of the Celery worker's pool process, and of its whole process group;
- Redis killed and restarted (its data gone: a flushed broker);
- SIGKILL of the local endpoint (and so its GPU workers), and of one GPU worker mid-job;
- SIGKILL and SIGTERM of the web server in the middle of an upload;
- the proxy answering 503, hanging, answering Not Found, losing /run's answer after
  forwarding it, answering 500 before forwarding, or 429, for a few seconds;
- a web outage of ``--outage-s`` seconds (60 by default) while jobs run;
- concurrent reconcile sweeps.

Each configuration (SQLite and PostgreSQL, webhooks on and off) runs the same way. At the
end every fault is healed, the run waits for every job to end, and each job is checked
against the endpoint's own record (its job store: which RunPod jobs carried the job's
input, and how each ended). It prints JSON per configuration and in total: faults injected,
jobs, lost, executed twice, failed wrongly, left non-terminal, orphan files.

    python -m bench chaos                       # 4 configurations, about 30 faults each
    python -m bench chaos --jobs 10 --faults 8 --outage-s 0 --backends sqlite --webhooks off
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from deploy.local.store import Store
from deploy.runpod.vocabulary import TERMINAL
from deploy.stack.net import free_port

PROXY_MODES = ("503", "hang", "404", "lost", "500", "429")
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
    """Forwards the app's job-API calls to the endpoint, or misbehaves for a while."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.mode = "pass"
        self.until = 0.0
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v2"
        self._server: ThreadingHTTPServer | None = None

    def misbehave(self, mode: str, seconds: float) -> None:
        self.mode, self.until = mode, time.monotonic() + seconds

    def heal(self) -> None:
        self.mode = "pass"

    def current(self) -> str:
        if self.mode != "pass" and time.monotonic() > self.until:
            self.mode = "pass"
        return self.mode

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
                if mode == "503":
                    return self._answer(503, b'{"error": "service unavailable"}')
                if mode == "429":
                    return self._answer(429, b'{"error": "rate limited"}')
                if mode == "404":
                    return self._answer(404, b"Not Found")
                if mode == "500":
                    return self._answer(500, b'{"error": "internal"}')
                if mode == "hang":
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
                if mode == "lost" and self.path.endswith("/run"):
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
    faults: Counter = field(default_factory=Counter)
    jobs: list[str] = field(default_factory=list)
    upload_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    web_down: threading.Event = field(default_factory=threading.Event)

    def upload(self, body: bytes = VIDEO, sleep_s: float = 0.0, timeout: float = 60) -> None:
        """Upload one job through the form; a refused or cut-off upload creates no job."""
        if self.web_down.is_set():
            return
        session = requests.Session()
        try:
            page = session.get(self.web.url("/"), timeout=10).text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            response = session.post(
                self.web.url("/jobs"),
                data={"csrf_token": token, "pipeline": "echo", "param.sleep_s": str(sleep_s)},
                files={"file": ("clip.mp4", body, "video/mp4")},
                allow_redirects=False,
                timeout=timeout,
            )
        except (requests.RequestException, AttributeError):
            with self.lock:
                self.upload_errors += 1
            return
        finally:
            session.close()
        if response.status_code == 303:
            with self.lock:
                self.jobs.append(response.headers["Location"].rsplit("/", 1)[1])
        else:
            with self.lock:
                self.upload_errors += 1


def _restart_web(run: Run) -> None:
    run.web.process.stop(timeout=1)
    run.web.process.start()
    run.web.wait_ready(timeout=60)


def _kill_celery_pool(run: Run) -> None:
    import psutil

    children = psutil.Process(run.worker.process.pid).children()
    if children:
        random.choice(children).kill()
    else:
        run.worker.kill()
        run.worker.restart()


def _kill_celery_group(run: Run) -> None:
    run.worker.kill()
    run.worker.restart()


def _kill_redis(run: Run) -> None:
    process = run.redis.process
    process.kill()
    time.sleep(random.uniform(0.5, 2.0))
    process.start()
    process.wait_for_port(int(run.redis.url.rsplit(":", 1)[1].split("/")[0]), timeout=15)


def _kill_endpoint(run: Run) -> None:
    run.endpoint.kill()
    time.sleep(random.uniform(0.2, 1.5))
    run.endpoint.start()


def _kill_gpu_worker(run: Run) -> None:
    import psutil

    workers = []
    for process in psutil.Process(run.endpoint.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # exited (or a zombie) meanwhile
            if "gpu_worker" in " ".join(process.cmdline()):
                workers.append(process)
    if workers:
        with contextlib.suppress(psutil.Error):
            random.choice(workers).kill()


def _web_mid_upload(run: Run, sig: int) -> None:
    big = VIDEO + os.urandom(8 * 1024 * 1024)
    uploader = threading.Thread(target=run.upload, args=(big,), kwargs={"timeout": 30})
    uploader.start()
    time.sleep(random.uniform(0.05, 0.4))
    run.web.process.signal_group(sig)
    uploader.join()
    if sig == signal.SIGTERM:
        with contextlib.suppress(Exception):
            run.web.process.process.wait(timeout=10)
    _restart_web(run)


def _proxy_fault(run: Run, mode: str) -> None:
    run.proxy.misbehave(mode, random.uniform(2.0, 6.0))


def _concurrent_reconciles(run: Run) -> None:
    from app import create_app
    from app.db import session_scope
    from app.lifecycle.reconcile import reconcile
    from app.services import services
    from app.settings import Settings

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


def _faults(run: Run) -> dict[str, Callable[[], None]]:
    table: dict[str, Callable[[], None]] = {
        "celery_pool_sigkill": lambda: _kill_celery_pool(run),
        "celery_group_sigkill": lambda: _kill_celery_group(run),
        "redis_restart": lambda: _kill_redis(run),
        "endpoint_sigkill": lambda: _kill_endpoint(run),
        "gpu_worker_sigkill": lambda: _kill_gpu_worker(run),
        "web_sigkill_mid_upload": lambda: _web_mid_upload(run, signal.SIGKILL),
        "web_sigterm_mid_upload": lambda: _web_mid_upload(run, signal.SIGTERM),
        "concurrent_reconciles": lambda: _concurrent_reconciles(run),
    }
    for mode in PROXY_MODES:
        table[f"proxy_{mode}"] = lambda mode=mode: _proxy_fault(run, mode)
    return table


def _web_outage(run: Run, seconds: float) -> None:
    run.web_down.set()
    run.web.process.stop(timeout=5)
    time.sleep(seconds)
    run.web.process.start()
    run.web.wait_ready(timeout=60)
    run.web_down.clear()


@contextlib.contextmanager
def _stack(work: Path, database_url: str, webhooks: bool) -> Iterator[Run]:
    from deploy.stack.services import whole_stack

    extra = {**FAST, "USE_WEBHOOKS": "true" if webhooks else "false"}
    if database_url:
        extra["DATABASE_URL"] = database_url
    options = {"workers_max": 2, "idle_timeout": 10, "webhook_retry_delay": 1, "env": WORKER_ENV}
    with whole_stack(
        work, endpoint_options=options, extra_env=extra, external_redis=False, between=FaultProxy
    ) as s:
        yield Run(work, s.env, s.redis, s.endpoint, s.front, s.web, s.worker, s.beat)


def run_config(
    work: Path,
    *,
    database_url: str = "",
    webhooks: bool = True,
    jobs: int = 40,
    faults: int = 30,
    outage_s: float = 60.0,
    settle_s: float = 420.0,
    seed: int | None = None,
) -> dict[str, Any]:
    """One configuration: inject ``faults`` faults while uploading ``jobs`` jobs; check."""
    rng = random.Random(seed)
    random.seed(rng.random())
    with _stack(work, database_url, webhooks) as run:
        table = _faults(run)
        stop = threading.Event()

        def uploader() -> None:
            for _ in range(jobs):
                if stop.is_set():
                    return
                while run.web_down.is_set():
                    time.sleep(0.5)
                run.upload(sleep_s=round(random.uniform(0, 1.5), 1))
                time.sleep(random.uniform(0.1, 0.6))

        feeder = threading.Thread(target=uploader)
        feeder.start()
        outage_at = random.randrange(faults) if outage_s > 0 and faults else -1
        for n in range(faults):
            time.sleep(random.uniform(0.2, 1.5))
            if n == outage_at:
                _web_outage(run, outage_s)
                run.faults["web_outage"] += 1
                continue
            name = random.choice(sorted(table))
            try:
                table[name]()
            except Exception as exc:  # noqa: BLE001 - a fault that could not be injected
                run.faults[f"not_injected:{name}:{type(exc).__name__}"] += 1
                continue
            run.faults[name] += 1
        feeder.join()
        # Heal everything, then let beat, polls, webhooks and workers bring every job home.
        run.proxy.heal()
        _ensure_up(run)
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline and _open_jobs(run):
            time.sleep(2)
        before = _orphans(run)
        removed = _cleanup(run)
        result = _check(run)
        result["orphans_before_cleanup"] = len(before)
        result["orphans_removed_by_cleanup"] = removed
        return result


def _orphans(run: Run) -> list[str]:
    storage = Path(run.env["STORAGE_DIR"])
    rows = _rows(run)
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


def _rows(run: Run) -> dict[str, tuple[str, str | None]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(run.env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status, error FROM jobs")).all()
    finally:
        engine.dispose()
    return {row[0]: (row[1], row[2]) for row in rows}


def _story(run: Run, job_id: str) -> dict[str, Any]:
    """What the app knows of a job that did not end: for the report's details."""
    from sqlalchemy import create_engine, text

    engine = create_engine(run.env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            job = conn.execute(
                text(
                    "SELECT status, runpod_id, diagnosis, cancel_requested_at, next_poll_at, "
                    "updated_at FROM jobs WHERE id = :id"
                ),
                {"id": job_id},
            ).one()
            attempts = conn.execute(
                text(
                    "SELECT number, state, runpod_id, claimed_runpod_id, error FROM attempts "
                    "WHERE job_id = :id ORDER BY number"
                ),
                {"id": job_id},
            ).all()
    finally:
        engine.dispose()
    at_endpoint = [
        {k: r[k] for k in ("id", "status", "error")}
        for r in _endpoint_records(run)
        if (r["input"] or {}).get("job_key") == job_id
    ]
    return {
        "job": [str(v) for v in job],
        "attempts": [[str(v) for v in a] for a in attempts],
        "endpoint": at_endpoint,
    }


def _open_jobs(run: Run) -> int:
    return sum(1 for status, _ in _rows(run).values() if status not in TERMINAL)


def _endpoint_records(run: Run) -> list[dict[str, Any]]:
    """The endpoint's own job records, read through its store (which knows its schema)."""
    store = Store(run.endpoint.state_dir / "jobs.sqlite3")
    try:
        return store.load_jobs()
    finally:
        store.close()


def _check(run: Run) -> dict[str, Any]:
    rows = _rows(run)
    executed: Counter = Counter()
    for record in _endpoint_records(run):
        key = (record["input"] or {}).get("job_key")
        output = record["output"]
        # The handler ran the model and returned a result (a refused claim or a failed
        # transfer returns an error instead).
        if key and record["status"] == "COMPLETED" and isinstance(output, dict):
            if "error" not in output:
                executed[key] += 1
    # Lost: an accepted upload without its row, or a job shown COMPLETED that no GPU
    # worker ever ran (its result would be made up).
    lost = [job for job in run.jobs if job not in rows]
    lost += [
        job for job, (status, _) in rows.items() if status == "COMPLETED" and not executed[job]
    ]
    open_jobs = [job for job, (status, _) in rows.items() if status not in TERMINAL]
    failed = {
        job: error
        for job, (status, error) in rows.items()
        if status in TERMINAL and status != "COMPLETED"
    }
    twice = [job for job, count in executed.items() if count > 1]
    orphans = _orphans(run)
    return {
        "faults_injected": sum(v for k, v in run.faults.items() if not k.startswith("not_")),
        "faults": dict(sorted(run.faults.items())),
        # Rows, not answered uploads: an upload cut off after its row committed is a job.
        "jobs": len(rows),
        "uploads_answered": len(run.jobs),
        "executed": sum(executed.values()),
        "uploads_refused_or_cut": run.upload_errors,
        "lost": len(lost),
        "executed_twice": len(twice),
        "failed_wrongly": len(failed),
        "left_non_terminal": len(open_jobs),
        "orphan_files": len(orphans),
        "details": {
            "failed": dict(list(failed.items())[:10]),
            "twice": twice[:10],
            "open": {job: _story(run, job) for job in open_jobs[:5]},
            "orphans": orphans[:10],
        },
    }


def _postgres_url(base: str) -> contextlib.AbstractContextManager[str]:
    os.environ["TEST_DATABASE_URL"] = base
    from tests.app.database import postgres_schema

    return postgres_schema()


COLUMNS = (
    "faults_injected",
    "jobs",
    "lost",
    "executed_twice",
    "failed_wrongly",
    "left_non_terminal",
    "orphan_files",
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench chaos", description=__doc__)
    parser.add_argument("--jobs", type=int, default=40, help="jobs per configuration")
    parser.add_argument("--faults", type=int, default=30, help="faults per configuration")
    parser.add_argument("--outage-s", type=float, default=60.0, help="web outage (0: none)")
    parser.add_argument("--settle-s", type=float, default=420.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--webhooks", default="on,off")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "true")
    os.environ.setdefault("RUNPOD_SKIP_GPU_CHECK", "true")
    results: dict[str, Any] = {}
    for backend in args.backends.split(","):
        for hooks in args.webhooks.split(","):
            name = f"{backend}, webhooks {hooks}"
            with tempfile.TemporaryDirectory(prefix="chaos-") as tmp, contextlib.ExitStack() as es:
                url = (
                    es.enter_context(_postgres_url(args.postgres))
                    if backend == "postgresql"
                    else ""
                )
                started = time.monotonic()
                results[name] = run_config(
                    Path(tmp),
                    database_url=url,
                    webhooks=hooks == "on",
                    jobs=args.jobs,
                    faults=args.faults,
                    outage_s=args.outage_s,
                    settle_s=args.settle_s,
                    seed=args.seed,
                )
                results[name]["seconds"] = round(time.monotonic() - started, 1)
            print(json.dumps({name: results[name]}, indent=2), flush=True)
    total = {col: sum(r[col] for r in results.values()) for col in COLUMNS}
    print(json.dumps({"total": total}, indent=2))
    bad = any(total[col] for col in COLUMNS if col not in ("faults_injected", "jobs"))
    return 1 if bad else 0
