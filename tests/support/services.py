"""The stack's real services as pytest fixtures; the starters live in ``deploy.stack``.

Import the fixtures into a conftest.py (``from tests.support.services import redis_url``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from deploy.stack.services import RedisServer, S3Server, moto_s3_server, redis_server


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
