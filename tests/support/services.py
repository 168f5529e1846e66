"""The stack's real services as pytest fixtures; the starters themselves live in ``deploy.stack``.

Import fixtures into a conftest.py (``from tests.support.services import redis_service``);
the starters and handles are re-exported here for the tests that already import them from
this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from deploy.stack.commands import CELERY_APP, PYTHON, WEB_APP
from deploy.stack.processes import (
    ROOT,
    ManagedProcess,
    ServiceError,
    alive_pids,
    command_line,
    descendants,
    wait_gone,
)
from deploy.stack.services import (
    CeleryProcess,
    DevServer,
    RedisServer,
    S3Server,
    WebServer,
    app_env,
    celery_beat,
    celery_worker,
    create_tables,
    gunicorn_web,
    moto_s3_server,
    redis_server,
    wait_http,
)

__all__ = [
    "CELERY_APP",
    "PYTHON",
    "ROOT",
    "WEB_APP",
    "CeleryProcess",
    "DevServer",
    "ManagedProcess",
    "RedisServer",
    "S3Server",
    "ServiceError",
    "WebServer",
    "alive_pids",
    "app_env",
    "celery_beat",
    "celery_worker",
    "command_line",
    "create_tables",
    "descendants",
    "gunicorn_web",
    "moto_s3_server",
    "redis_server",
    "redis_service",
    "redis_url",
    "s3_bucket",
    "s3_service",
    "wait_gone",
    "wait_http",
]


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
