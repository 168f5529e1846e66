"""Fixtures: local endpoints running real runpod SDK workers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deploy.stack.local_endpoint import local_endpoint

SDK_WORKER = Path(__file__).with_name("sdk_worker.py")


def sdk_worker_command() -> str:
    return f"{sys.executable} -u {SDK_WORKER}"


@pytest.fixture(scope="module")
def sdk_endpoint(tmp_path_factory):
    """One endpoint for a module: SDK test worker taking up to 4 jobs at once."""
    with local_endpoint(
        tmp_path_factory.mktemp("sdk-endpoint"),
        worker_command=sdk_worker_command(),
        workers_max=1,
        idle_timeout=30,
        webhook_retry_delay=0.2,
        env={"SDK_WORKER_CONCURRENCY": "4"},
    ) as ep:
        yield ep
