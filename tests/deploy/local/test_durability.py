"""Restarts, killed workers, crash loops, bursts: no job is lost, each failure says why."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from deploy.stack.local_endpoint import local_endpoint
from tests.deploy.local.conftest import sdk_worker_command

pytestmark = pytest.mark.timeout(180)


def _worker_processes(state_dir: Path) -> list[int]:
    """Pids of processes started for this endpoint's workers (the SDK heartbeat included)."""
    pids = []
    logs = state_dir / "workers"
    ids = {p.stem for p in logs.glob("*.log")} if logs.is_dir() else set()
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            worker = process.environ().get("LOCAL_ENDPOINT_WORKER")
        except psutil.Error:
            continue
        if worker in ids:
            pids.append(process.pid)
    return pids


def test_kill_9_with_queued_jobs_then_restart_completes_them_all(tmp_path):
    with local_endpoint(
        tmp_path,
        worker_command=sdk_worker_command(),
        idle_timeout=30,
        stop_grace=1,
        env={"SDK_WORKER_CONCURRENCY": "4"},
    ) as ep:
        api = ep.api()
        running = api.run({"mode": "sleep", "seconds": 2})
        ep.wait_status(running["id"], {"IN_PROGRESS"})
        queued = [api.run({"mode": "echo", "i": i})["id"] for i in range(5)]
        ep.wait_for(lambda: _worker_processes(tmp_path), timeout=10, what="worker processes")
        ep.kill()
        # PR_SET_PDEATHSIG: the workers (and the SDK's heartbeat child) die with the endpoint.
        ep.wait_for(lambda: not _worker_processes(tmp_path), timeout=10, what="workers to die")
        ep.start()
        for job_id in queued:
            assert ep.wait_status(job_id, timeout=30)["status"] == "COMPLETED"
        # The job that was running when the endpoint died is requeued once and completes.
        assert ep.wait_status(running["id"], timeout=30)["status"] == "COMPLETED"


def test_worker_killed_mid_job_is_requeued_once_then_failed_with_reason(tmp_path):
    with local_endpoint(
        tmp_path, worker_command=sdk_worker_command(), idle_timeout=30, stop_grace=1
    ) as ep:
        job = ep.api().run({"mode": "sleep", "seconds": 30})
        for attempt in range(2):
            status = ep.wait_status(job["id"], {"IN_PROGRESS"}, timeout=20)
            worker = next(w for w in ep.workers()["workers"] if w["id"] == status["workerId"])
            os.kill(worker["pid"], signal.SIGKILL)
            if attempt == 0:
                ep.wait_for(
                    lambda w=worker: (
                        ep.get(f"status/{job['id']}").json().get("workerId") not in (None, w["id"])
                    ),
                    timeout=20,
                    what="the job to move to a new worker",
                )
        final = ep.wait_status(job["id"], timeout=20)
        assert final["status"] == "FAILED"
        assert "exited with code 137" in final["error"]
        assert "out of memory" in final["error"]
        assert "requeued once" in final["error"]
        killed = [w for w in ep.workers()["workers"] if w["exitCode"] == 137]
        assert len(killed) == 2 and all(w["state"] == "unhealthy" for w in killed)


def test_crash_loop_keeps_jobs_queued_and_workers_unhealthy_like_runpod(tmp_path):
    missing = tmp_path / "handler-repo" / "handler.py"
    with local_endpoint(
        tmp_path / "state", worker_command=f"{sys.executable} -u {missing}", stop_grace=1
    ) as ep:
        api = ep.api()
        job = api.run({"pipeline": "echo"})["id"]
        ep.wait_for(lambda: ep.workers()["crashLoop"]["active"], timeout=60, what="a crash loop")
        assert ep.get(f"status/{job}").json()["status"] == "IN_QUEUE"
        health = ep.api().health()
        # Current workers only, as RunPod reports them: the one slot is unhealthy, not
        # every dead worker of the loop.
        workers = health["workers"]
        assert workers["unhealthy"] + workers["initializing"] == 1
        assert health["jobs"]["inQueue"] == 1
        info = ep.workers()
        assert "exit code 2" in info["crashLoop"]["lastError"]
        assert any("No such file" in line for line in info["crashLoop"]["logTail"])
        # Restarts keep coming, each after a longer wait (backoff), never failing the job.
        crashes = info["crashLoop"]["consecutiveCrashes"]
        ep.wait_for(
            lambda: ep.workers()["crashLoop"]["consecutiveCrashes"] > crashes,
            timeout=60,
            what="another restart",
        )
        assert ep.get(f"status/{job}").json()["status"] == "IN_QUEUE"


def test_health_counts_current_workers_only_in_a_crash_loop(tmp_path):
    # Two jobs want two workers; each crashes at start, again and again. /health must
    # never report more workers than workersMax 2, however many have died.
    with local_endpoint(
        tmp_path / "state",
        worker_command=f"{sys.executable} -c 'raise SystemExit(3)'",
        workers_max=2,
        scaler="REQUEST_COUNT",
        scaler_value=1,
        stop_grace=1,
    ) as ep:
        api = ep.api()
        for i in range(2):
            api.run({"pipeline": "echo", "i": i})
        samples = []

        def six_crashes():
            workers = api.health()["workers"]
            samples.append(sum(workers[k] for k in ("idle", "running", "initializing")))
            samples[-1] += workers["unhealthy"]
            return ep.get("stats").json()["workers"]["started"] >= 6

        ep.wait_for(six_crashes, 60, what="six crashes")
        assert max(samples) <= 2, samples


def test_fail_fast_crash_loop_fails_queued_jobs_with_exit_meaning_and_log_tail(tmp_path):
    missing = tmp_path / "handler-repo" / "handler.py"
    with local_endpoint(
        tmp_path / "state",
        worker_command=f"{sys.executable} -u {missing}",
        fail_fast_crash_loop=True,
    ) as ep:
        api = ep.api()
        jobs = [api.run({"pipeline": "echo"})["id"] for _ in range(2)]
        for job_id in jobs:
            final = ep.wait_status(job_id, timeout=20)
            assert final["status"] == "FAILED"
            assert "crash-looping" in final["error"]
            assert "exit code 2" in final["error"]
            assert "file not found" in final["error"]
            assert "No such file or directory" in final["error"]
        info = ep.workers()
        assert info["crashLoop"]["active"] is True
        assert info["crashLoop"]["consecutiveCrashes"] >= 3
        assert any("No such file" in line for line in info["crashLoop"]["logTail"])
        assert all(w["exitCode"] == 2 for w in info["workers"])
        assert ep.api().health()["workers"]["unhealthy"] == 1  # workersMax 1: one slot


def test_burst_of_50_never_exceeds_workers_max_and_loses_nothing(tmp_path):
    with local_endpoint(
        tmp_path,
        worker_command=sdk_worker_command(),
        workers_max=2,
        scaler_value=0.2,
        idle_timeout=30,
        env={"SDK_WORKER_CONCURRENCY": "5"},
    ) as ep:
        api = ep.api()
        ids = [api.run({"mode": "sleep", "seconds": 0.2, "i": i})["id"] for i in range(50)]
        finals = [ep.wait_status(job_id, timeout=60) for job_id in ids]
        assert [f["status"] for f in finals] == ["COMPLETED"] * 50
        assert len({f["workerId"] for f in finals}) == 2
        stats = ep.get("stats").json()
        assert stats["workers"]["peak"] <= 2
        assert stats["workerRequests"]["job-take-batch"] >= 2
        assert ep.api().health()["jobs"]["completed"] == 50
