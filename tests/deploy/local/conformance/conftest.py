"""Fixtures: local endpoints whose workers run the conformance handlers (``worker.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import runpod

from deploy.stack.local_endpoint import LocalEndpoint, local_endpoint

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


def sdk_client(ep: LocalEndpoint, monkeypatch) -> runpod.Endpoint:
    monkeypatch.setattr(runpod, "endpoint_url_base", ep.base_url)
    return runpod.Endpoint(ep.endpoint_id, api_key=ep.api_key)
