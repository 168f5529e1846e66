"""Real services on this machine: Redis, an S3 server, gunicorn, Celery worker and beat, make run.

Every starter is a context manager that yields a handle and, on exit, stops the process and
everything it started (each runs in its own process group, so a SIGKILL reaches Celery's pool
children too). Output goes to a log file per process; ``log_tail()`` shows it on failure.

Typical use::

    with redis_server() as redis, moto_s3_server() as s3:
        env = app_env(tmp_path, redis_url=redis.url, endpoint=ep, extra=s3.env("bucket"))
        create_tables(env)
        with celery_worker(env, tmp_path) as worker, gunicorn_web(env, tmp_path) as web:
            requests.get(web.url("/"))
            worker.kill()  # SIGKILL the worker and its pool children
            worker.restart()

Set ``TEST_REDIS_URL`` (or ``REDIS_URL``) to use an existing Redis instead of starting one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.stack import commands
from deploy.stack.commands import CELERY_APP, WEB_APP
from deploy.stack.net import free_port
from deploy.stack.processes import (
    ROOT,
    ManagedProcess,
    ServiceError,
    alive_pids,
    child_env,
    descendants,
    subfolder,
)

# Redis.


@dataclass
class RedisServer:
    url: str
    process: ManagedProcess | None  # None when an external Redis was given

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)

    def flush(self) -> None:
        """Empty the database: what a Redis that lost its data looks like to Celery."""
        with contextlib.closing(self.client()) as client:
            client.flushdb()


@contextlib.contextmanager
def redis_server(
    workdir: Path | str | None = None, *, external: bool = True
) -> Iterator[RedisServer]:
    """A private Redis on a free port, or ``TEST_REDIS_URL``/``REDIS_URL`` when set."""
    url = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    if url and external:
        yield RedisServer(url=url, process=None)
        return
    port = free_port()
    data = subfolder(workdir, f"redis-{port}")
    argv = commands.redis_argv(port, data)
    with ManagedProcess("redis", argv, child_env(None), data / "redis.log").running(5) as proc:
        proc.wait_for_port(port, timeout=15)
        yield RedisServer(url=f"redis://127.0.0.1:{port}/0", process=proc)


# S3 (moto server mode).

MOTO_KEY_ID = "testing-key-id"
MOTO_SECRET = "testing-secret-key"  # noqa: S105 - moto accepts any key
MOTO_REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint_url: str
    process: ManagedProcess

    def env(self, bucket: str) -> dict[str, str]:
        """The app's settings for S3 mode against this server."""
        return {
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": bucket,
            "S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": MOTO_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": MOTO_SECRET,
            "AWS_DEFAULT_REGION": MOTO_REGION,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=MOTO_KEY_ID,
            aws_secret_access_key=MOTO_SECRET,
            region_name=MOTO_REGION,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def moto_s3_server(workdir: Path | str | None = None) -> Iterator[S3Server]:
    """moto's S3-compatible server on a free port (a real HTTP server, not a mock patch)."""
    port = free_port()
    logs = subfolder(workdir, f"moto-{port}")
    argv = commands.moto_argv(port)
    with ManagedProcess("moto", argv, child_env(None), logs / "moto.log").running(5) as proc:
        proc.wait_for_port(port, timeout=30)
        yield S3Server(endpoint_url=f"http://127.0.0.1:{port}", process=proc)


# The app's environment and database.


def app_env(
    workdir: Path | str,
    *,
    redis_url: str,
    endpoint: Any = None,
    web_port: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for web, worker and beat of one test stack (APP_ENV=test).

    ``endpoint`` is a ``deploy.stack.local_endpoint.LocalEndpoint`` (or anything with
    ``base_url``, ``endpoint_id`` and ``api_key``); one serving several endpoints becomes
    ``RUNPOD_ENDPOINTS`` (each endpoint's id is its name, a spec in deploy/endpoints).
    ``web_port`` fixes PUBLIC_BASE_URL;
    pass the same port to ``gunicorn_web``. ``extra`` overrides anything.
    """
    base = Path(workdir)
    (base / "storage").mkdir(parents=True, exist_ok=True)
    env = {
        "APP_ENV": "test",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": f"sqlite:///{base / 'app.db'}",
        "REDIS_URL": redis_url,
        "STORAGE_BACKEND": "local",
        "STORAGE_DIR": str(base / "storage"),
        "ADMIN_PASSWORD": "test-admin-password",
        "API_TOKENS": "test-api-token",
        "SENTRY_DSN": "",
    }
    if web_port is not None:
        env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{web_port}"
    if endpoint is not None:
        env["RUNPOD_ENDPOINT_BASE_URL"] = endpoint.base_url
        env["RUNPOD_API_KEY"] = endpoint.api_key
        ids = [e.endpoint_id for e in getattr(getattr(endpoint, "config", None), "endpoints", [])]
        if len(ids) > 1:
            env["RUNPOD_ENDPOINTS"] = ",".join(f"{i}={i}" for i in ids)
        else:
            env["RUNPOD_ENDPOINT_ID"] = endpoint.endpoint_id
    env.update(extra or {})
    return env


def create_tables(env: Mapping[str, str], timeout: float = 120.0) -> None:
    """Create the database tables for ``env``'s DATABASE_URL; raise with the output if not."""
    done = subprocess.run(
        commands.migrate_argv(),
        cwd=ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise ServiceError(f"creating tables failed:\n{done.stdout}\n{done.stderr}")


# Web (gunicorn).


@dataclass
class WebServer:
    port: int
    process: ManagedProcess

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def wait_ready(self, timeout: float = 60.0, path: str = "/") -> None:
        """Wait for an HTTP answer (any status): gunicorn listens before its worker boots."""
        wait_http(self.process, self.url(path), timeout)


def wait_http(proc: ManagedProcess, url: str, timeout: float = 60.0) -> None:
    """Block until ``url`` gives any HTTP answer; fail early, with the log, if ``proc`` dies."""
    import requests

    def answers() -> bool:
        try:
            requests.get(url, timeout=2, allow_redirects=False).close()
        except requests.RequestException:
            return False
        return True

    proc.wait_until(answers, f"an HTTP answer from {url}", timeout)


@contextlib.contextmanager
def gunicorn_web(
    env: Mapping[str, str],
    workdir: Path | str | None = None,
    *,
    port: int | None = None,
    workers: int = 1,
    app: str = WEB_APP,
) -> Iterator[WebServer]:
    """The Flask app under gunicorn on ``port`` (free port if None), as in production."""
    port = port or free_port()
    logs = subfolder(workdir, "logs")
    proc = ManagedProcess(
        "web",
        commands.gunicorn_argv(f"127.0.0.1:{port}", workers=workers, app=app),
        child_env(env),
        logs / f"web-{port}.log",
    )
    with proc.running(10):
        server = WebServer(port=port, process=proc)
        server.wait_ready(timeout=60)
        yield server


# Celery worker and beat.


@dataclass(eq=False)
class CeleryProcess:
    """A Celery worker or beat; ``kill()`` and ``restart()`` for crash tests."""

    kind: str
    process: ManagedProcess
    ready_marker: str

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.process.wait_for_log(self.ready_marker, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the process and its pool children: a crash, no chance to re-queue."""
        self.process.kill()

    def stop(self, timeout: float = 15.0) -> int | None:
        """Warm shutdown (SIGTERM), then SIGKILL after ``timeout``."""
        return self.process.stop(timeout=timeout)

    def restart(self, timeout: float = 60.0) -> None:
        if self.process.alive():
            self.stop()
        with contextlib.suppress(FileNotFoundError):
            # A fresh log makes wait_ready() wait for the new process's marker.
            self.process.log_path.rename(
                self.process.log_path.with_suffix(f".{time.time_ns()}.log")
            )
        self.process.start()
        self.wait_ready(timeout)

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)


@contextlib.contextmanager
def celery_worker(
    env: Mapping[str, str],
    workdir: Path | str | None = None,
    *,
    concurrency: int = 2,
    pool: str = "prefork",
    queues: str | None = None,
    wait: bool = True,
    app: str = CELERY_APP,
) -> Iterator[CeleryProcess]:
    """A real Celery worker subprocess for ``env``; stopped (group-killed) on exit."""
    logs = subfolder(workdir, "logs")
    argv = commands.celery_worker_argv(
        concurrency=concurrency,
        pool=pool,
        hostname=f"worker-{uuid.uuid4().hex[:8]}@%h",
        # Heartbeats only add chatter to a test's logs; nothing here watches them.
        heartbeat=False,
        queues=queues,
        app=app,
    )
    proc = ManagedProcess(
        "celery-worker", argv, child_env(env), logs / f"worker-{uuid.uuid4().hex[:6]}.log"
    )
    worker = CeleryProcess("worker", proc, ready_marker=" ready.")
    with proc.running(15):  # CeleryProcess.stop(): warm shutdown, SIGKILL after 15 s
        if wait:
            worker.wait_ready()
        yield worker


@contextlib.contextmanager
def celery_beat(
    env: Mapping[str, str],
    workdir: Path | str | None = None,
    *,
    wait: bool = True,
    app: str = CELERY_APP,
) -> Iterator[CeleryProcess]:
    """Celery beat (the one scheduler) with its schedule file under ``workdir``."""
    base = subfolder(workdir, f"beat-{uuid.uuid4().hex[:6]}")
    proc = ManagedProcess(
        "celery-beat",
        commands.celery_beat_argv(base / "celerybeat-schedule", app),
        child_env(env),
        base / "beat.log",
    )
    beat = CeleryProcess("beat", proc, ready_marker="beat: Starting...")
    with proc.running(15):  # CeleryProcess.stop(): warm shutdown, SIGKILL after 15 s
        if wait:
            beat.wait_ready()
        yield beat


# The whole stack.


@dataclass
class Stack:
    """One running stack: what ``whole_stack`` started, each part a real process."""

    work: Path
    env: dict[str, str]
    redis: RedisServer
    endpoint: Any  # deploy.stack.local_endpoint.LocalEndpoint
    web: WebServer
    worker: CeleryProcess | None = None
    beat: CeleryProcess | None = None
    deliveries: CeleryProcess | None = None  # the webhooks queue's worker, when asked
    front: Any = None  # what ``between`` put in front of the endpoint, when given


@contextlib.contextmanager
def whole_stack(
    work: Path,
    *,
    endpoint_options: Mapping[str, Any] | None = None,
    endpoints: Sequence[Any] | None = None,
    extra_env: Mapping[str, str] | None = None,
    concurrency: int = 2,
    beat: bool = True,
    external_redis: bool = True,
    between: Any = None,
    deliveries: bool = False,
) -> Iterator[Stack]:
    """Redis, the local endpoint, the tables, gunicorn, a Celery worker (none when
    ``concurrency`` is 0) and beat, for the tests and the benchmarks; all stopped on exit.

    ``endpoints``: several endpoints in the one local endpoint process
    (``deploy.stack.local_endpoint.endpoint_spec`` each, named as the specs in
    deploy/endpoints, e.g. ``video`` and ``light``); the app routes by ``RUNPOD_ENDPOINTS``.
    Without it, one endpoint of ``endpoint_options``, the app's single ``default``.

    ``between(endpoint_url)`` returns a context manager whose value has a ``base_url`` the
    app then calls instead of the endpoint's (the chaos benchmark's fault proxy).
    ``deliveries`` adds the worker of the ``webhooks`` queue (Procfile ``deliveries``):
    threads, so deliveries hanging on a dead receiver hold none of the jobs' worker."""
    from deploy.stack.local_endpoint import local_endpoint, local_endpoints

    work.mkdir(parents=True, exist_ok=True)
    if endpoints and endpoint_options:
        raise TypeError("give each endpoint's options in its endpoint_spec(...)")
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server(work, external=external_redis))
        if endpoints:
            starting = local_endpoints(work / "endpoint", endpoints)
        else:
            starting = local_endpoint(work / "endpoint", **dict(endpoint_options or {}))
        endpoint = stack.enter_context(starting)
        front = stack.enter_context(between(endpoint.base_url)) if between else None
        port = free_port()
        env = app_env(work, redis_url=redis.url, endpoint=endpoint, web_port=port, extra=extra_env)
        if front is not None:
            env["RUNPOD_ENDPOINT_BASE_URL"] = front.base_url
        create_tables(env)
        web = stack.enter_context(gunicorn_web(env, work, port=port))
        running = Stack(work, env, redis, endpoint, web, front=front)
        if concurrency:
            running.worker = stack.enter_context(celery_worker(env, work, concurrency=concurrency))
        if deliveries:
            running.deliveries = stack.enter_context(
                celery_worker(env, work, concurrency=16, pool="threads", queues="webhooks")
            )
        if beat:
            running.beat = stack.enter_context(celery_beat(env, work))
        yield running


# make run.


class DevServer:
    """``python -m app.devserver`` (``make run``) in its own process group, as in a terminal.

    It brings its own Redis and endpoint whatever the caller's environment holds.
    """

    STACK_SETTINGS = frozenset(
        {
            "REDIS_URL",
            "RUNPOD_API_KEY",
            "RUNPOD_ENDPOINT_ID",
            "RUNPOD_ENDPOINTS",
            "DATABASE_URL",
            "PORT",
        }
    )

    def __init__(self, tmp_path: Path, *extra: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.instance = tmp_path / "instance"
        self.log_path = tmp_path / "devserver.log"
        child_env = {k: v for k, v in os.environ.items() if k not in self.STACK_SETTINGS}
        child_env.update(env or {})
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                commands.devserver_argv(self.port, self.instance, *extra),
                cwd=ROOT,
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_banner(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"password: (\S+)", self.log())
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"devserver exited early:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        raise AssertionError(f"no banner after {timeout}s:\n{self.log()[-4000:]}")

    def interrupt(self, timeout: float = 45.0) -> int:
        """Ctrl-C: SIGINT to the devserver's process group, as a terminal sends it."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"Ctrl-C did not stop it in {timeout}s:\n{self.log()[-4000:]}"
            ) from None

    def close(self) -> None:
        if self.process.poll() is None:
            with_children = descendants(self.process.pid)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            for pid in alive_pids(with_children):
                os.kill(pid, signal.SIGKILL)
