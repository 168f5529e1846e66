"""Real services for tests and benchmarks: Redis, an S3 server, gunicorn, Celery worker and beat.

Every starter is a context manager that yields a handle and, on exit, stops the process and
everything it started (each runs in its own process group, so a SIGKILL reaches Celery's pool
children too). Output goes to a log file per process; ``log_tail()`` shows it when a test fails.

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

import atexit
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.devserver import descendants, redis_server_binary
from tests.support.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CELERY_APP = "tasks.worker:celery_app"
WEB_APP = "app:create_app()"

_live: set[ManagedProcess] = set()


class ServiceError(RuntimeError):
    """A service did not start or stop as expected; the message carries its log tail."""


@dataclass(eq=False)
class ManagedProcess:
    """A subprocess in its own process group, with its output in ``log_path``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path = ROOT
    process: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # the child keeps its own copy of the descriptor
        try:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        _live.add(self)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, needle: str, timeout: float = 30.0) -> None:
        """Block until ``needle`` appears in the output; fail early if the process exits."""
        self.wait_until(lambda: needle in self.log_text(), f"{needle!r} in its log", timeout)

    def wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        def listening() -> bool:
            try:
                wait_for_port(port, timeout=0.2)
            except TimeoutError:
                return False
            return True

        self.wait_until(listening, f"a listener on port {port}", timeout)

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if not self.alive():
                raise ServiceError(
                    f"{self.name} exited with {self.process.returncode if self.process else None}"
                    f" before {what}:\n{self.log_tail()}"
                )
            time.sleep(0.1)
        raise ServiceError(f"{self.name}: no {what} after {timeout}s:\n{self.log_tail()}")

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process and every process in its group; reap it."""
        if self.process is None:
            return
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        _live.discard(self)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Ask the group to stop with ``sig``; SIGKILL whatever is left after ``timeout``."""
        if self.process is None:
            return None
        if self.alive():
            self.signal_group(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Pool children or grandchildren may outlive the leader: the group goes too.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        _live.discard(self)
        return self.process.returncode


@atexit.register
def _kill_leftovers() -> None:
    # Safety net for an interpreter that dies outside the context managers.
    for proc in list(_live):
        proc.kill()


def alive_pids(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.add(pid)
    return alive


def wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """Wait until none of ``pids`` runs; return those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while (left := alive_pids(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    merged = {**os.environ, **(env or {})}
    merged["PYTHONUNBUFFERED"] = "1"
    merged["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), merged.get("PYTHONPATH", "")) if p
    )
    return merged


def _workdir(base: Path | str | None, name: str) -> Path:
    root = Path(base) if base is not None else Path(tempfile.mkdtemp(prefix="svc-"))
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


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


def redis_argv(port: int, data_dir: Path) -> list[str]:
    """Command line for a private broker: no persistence, never evicts Celery's keys."""
    return [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory-policy",
        "noeviction",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]


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
    data = _workdir(workdir, f"redis-{port}")
    proc = ManagedProcess("redis", redis_argv(port, data), _child_env(None), data / "redis.log")
    proc.start()
    try:
        proc.wait_for_port(port, timeout=15)
        yield RedisServer(url=f"redis://127.0.0.1:{port}/0", process=proc)
    finally:
        proc.stop(timeout=5)


# S3 (moto server mode).

MOTO_KEY_ID = "testing-key-id"
MOTO_SECRET = "testing-secret-key"
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
    logs = _workdir(workdir, f"moto-{port}")
    argv = [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = ManagedProcess("moto", argv, _child_env(None), logs / "moto.log")
    proc.start()
    try:
        proc.wait_for_port(port, timeout=30)
        yield S3Server(endpoint_url=f"http://127.0.0.1:{port}", process=proc)
    finally:
        proc.stop(timeout=5)


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

    ``endpoint`` is a ``tests.support.local_endpoint.LocalEndpoint`` (or anything with
    ``base_url``, ``endpoint_id`` and ``api_key``). ``web_port`` fixes PUBLIC_BASE_URL;
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
        env["RUNPOD_ENDPOINT_ID"] = endpoint.endpoint_id
        env["RUNPOD_API_KEY"] = endpoint.api_key
    env.update(extra or {})
    return env


def migrate_argv() -> list[str]:
    """The command that creates or upgrades the tables (documented in ``app/settings.py``)."""
    return [PYTHON, "-m", "app.migrate"]


def create_tables(env: Mapping[str, str], timeout: float = 120.0) -> None:
    """Create the database tables for ``env``'s DATABASE_URL; raise with the output if not."""
    done = subprocess.run(
        migrate_argv(),
        cwd=ROOT,
        env=_child_env(env),
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


def gunicorn_argv(
    port: int, *, workers: int = 1, threads: int = 4, timeout: int = 300, app: str = WEB_APP
) -> list[str]:
    # Threads keep one slow upload from blocking the page polls; the long timeout covers a
    # multi-GiB upload streamed to storage.
    return [
        PYTHON,
        "-m",
        "gunicorn",
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--timeout",
        str(timeout),
        "--graceful-timeout",
        "5",
        # The default control socket is one path per user: parallel servers would clash.
        "--no-control-socket",
        "--access-logfile",
        "-",
        "--error-logfile",
        "-",
    ]


@contextlib.contextmanager
def gunicorn_web(
    env: Mapping[str, str],
    workdir: Path | str | None = None,
    *,
    port: int | None = None,
    workers: int = 1,
    threads: int = 4,
    app: str = WEB_APP,
) -> Iterator[WebServer]:
    """The Flask app under gunicorn on ``port`` (free port if None), as in production."""
    port = port or free_port()
    logs = _workdir(workdir, "logs")
    proc = ManagedProcess(
        "web",
        gunicorn_argv(port, workers=workers, threads=threads, app=app),
        _child_env(env),
        logs / f"web-{port}.log",
    )
    proc.start()
    try:
        server = WebServer(port=port, process=proc)
        server.wait_ready(timeout=60)
        yield server
    finally:
        proc.stop(timeout=10)


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


def celery_worker_argv(
    *,
    concurrency: int = 2,
    pool: str = "prefork",
    queues: str | None = None,
    name: str = "",
    app: str = CELERY_APP,
) -> list[str]:
    argv = [
        PYTHON,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--hostname",
        f"{name or 'worker'}-{uuid.uuid4().hex[:8]}@%h",
        # Gossip, mingle and heartbeats only slow a test worker's start and add chatter.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if queues:
        argv += ["--queues", queues]
    return argv


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
    logs = _workdir(workdir, "logs")
    argv = celery_worker_argv(concurrency=concurrency, pool=pool, queues=queues, app=app)
    proc = ManagedProcess(
        "celery-worker", argv, _child_env(env), logs / f"worker-{uuid.uuid4().hex[:6]}.log"
    )
    worker = CeleryProcess("worker", proc, ready_marker=" ready.")
    proc.start()
    try:
        if wait:
            worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def celery_beat_argv(schedule_file: Path, app: str = CELERY_APP) -> list[str]:
    return [
        PYTHON,
        "-m",
        "celery",
        "-A",
        app,
        "beat",
        "--loglevel",
        "INFO",
        "--schedule",
        str(schedule_file),
        "--pidfile=",
    ]


@contextlib.contextmanager
def celery_beat(
    env: Mapping[str, str],
    workdir: Path | str | None = None,
    *,
    wait: bool = True,
    app: str = CELERY_APP,
) -> Iterator[CeleryProcess]:
    """Celery beat (the one scheduler) with its schedule file under ``workdir``."""
    base = _workdir(workdir, f"beat-{uuid.uuid4().hex[:6]}")
    proc = ManagedProcess(
        "celery-beat",
        celery_beat_argv(base / "celerybeat-schedule", app),
        _child_env(env),
        base / "beat.log",
    )
    beat = CeleryProcess("beat", proc, ready_marker="beat: Starting...")
    proc.start()
    try:
        if wait:
            beat.wait_ready()
        yield beat
    finally:
        beat.stop()


# make run.


class DevServer:
    """``python -m app.devserver`` (``make run``) in its own process group, as in a terminal.

    It brings its own Redis and endpoint whatever the caller's environment holds.
    """

    STACK_SETTINGS = frozenset(
        {"REDIS_URL", "RUNPOD_API_KEY", "RUNPOD_ENDPOINT_ID", "DATABASE_URL", "PORT"}
    )

    def __init__(self, tmp_path: Path, *extra: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.instance = tmp_path / "instance"
        self.log_path = tmp_path / "devserver.log"
        child_env = {k: v for k, v in os.environ.items() if k not in self.STACK_SETTINGS}
        child_env.update(env or {})
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.devserver", "--port", str(self.port)]
                + ["--instance-dir", str(self.instance), *extra],
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


# Pytest fixtures: import them into a conftest.py (``from tests.support.services import ...``).


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory) -> Iterator[RedisServer]:
    """One Redis for the session (or TEST_REDIS_URL/REDIS_URL)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_service: RedisServer) -> Iterator[str]:
    """The session's Redis, flushed before and after each test."""
    redis_service.flush()
    yield redis_service.url
    redis_service.flush()


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory) -> Iterator[S3Server]:
    """One moto S3 server for the session."""
    with moto_s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_service: S3Server) -> str:
    """A fresh bucket on the session's moto server."""
    return s3_service.create_bucket(f"test-{uuid.uuid4().hex[:12]}")
