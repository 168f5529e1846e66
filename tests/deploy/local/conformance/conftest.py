"""Fixtures: local endpoints whose workers run the conformance handlers (``worker.py``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import runpod

from tests.support.local_endpoint import LocalEndpoint, local_endpoint

WORKER = Path(__file__).with_name("worker.py")
COMMAND = f"{sys.executable} -u {WORKER}"
# Heartbeats every second (RunPod's SDK default is 10 s) so busy/idle shows sooner.
FAST_PING = {"RUNPOD_PING_INTERVAL": "1000"}


def endpoint(path: Path, shape: str = "sync", env: dict[str, str] | None = None, **options):
    """``local_endpoint`` running ``worker.py`` in ``shape``, RunPod's defaults otherwise."""
    options.setdefault("stop_grace", 1)
    return local_endpoint(
        path, worker_command=COMMAND, env={"SHAPE": shape, **FAST_PING, **(env or {})}, **options
    )


@pytest.fixture(scope="module")
def sync_ep(tmp_path_factory) -> Iterator[LocalEndpoint]:
    """A sync-handler endpoint shared by a module (one warm worker, up to two)."""
    with endpoint(
        tmp_path_factory.mktemp("conformance-sync"),
        "sync",
        workers_max=2,
        idle_timeout=30,
        scaler_value=1,
        min_execution_timeout=1,
        min_ttl=1,
    ) as ep:
        yield ep


def sdk_client(ep: LocalEndpoint, monkeypatch) -> runpod.Endpoint:
    monkeypatch.setattr(runpod, "endpoint_url_base", ep.base_url)
    return runpod.Endpoint(ep.endpoint_id, api_key=ep.api_key)
