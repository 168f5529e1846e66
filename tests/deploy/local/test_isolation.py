"""Workers of one endpoint do not share files: each has its own working and temporary
directory, as each RunPod worker has its own container. They do share the machine's
network, so a fixed port collides; the worker's diagnosis names the port and the way out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deploy.stack.local_endpoint import local_endpoint
from deploy.stack.net import free_port

pytestmark = pytest.mark.timeout(180)

COMMAND = f"{sys.executable} -u {Path(__file__).with_name('container_worker.py')}"
ENV = {"SHAPE": "async", "RUNPOD_PING_INTERVAL": "1000"}


def test_two_workers_writing_the_same_fixed_paths_both_serve(tmp_path):
    with local_endpoint(
        tmp_path, worker_command=COMMAND, env=ENV, workers_min=2, workers_max=2, stop_grace=1
    ) as ep:
        ep.wait_for(lambda: ep.workers()["summary"]["idle"] == 2, 60, what="two ready workers")
        info = ep.workers()
        assert not any(w["state"] == "unhealthy" for w in info["workers"]), info
        dirs = {w["workDir"] for w in info["workers"]}
        assert len(dirs) == 2 and all(Path(d, "model.lock").is_file() for d in dirs)
    # A worker's directory goes with it, like a container's disk.
    assert not any(Path(d).exists() for d in dirs)


def test_a_port_collision_is_diagnosed_with_the_port_and_workers_max_1(tmp_path):
    port = free_port()
    with local_endpoint(
        tmp_path,
        worker_command=COMMAND,
        env={**ENV, "FIXED_PORT": str(port)},
        workers_min=2,
        workers_max=2,
        stop_grace=1,
    ) as ep:

        def diagnosed():
            errors = [w["lastError"] for w in ep.workers()["workers"] if w["lastError"]]
            return [e for e in errors if f"port {port}" in e]

        (error, *_) = ep.wait_for(diagnosed, 60, what="a port collision diagnosis")
        assert "already in use" in error and "--workers-max 1" in error
        # The worker holding the port serves on.
        ep.wait_for(lambda: ep.workers()["summary"]["idle"] == 1, 60, what="one ready worker")
