"""Scale from zero, run a job, answer status, scale back to zero."""

from __future__ import annotations

import signal

import pytest

from deploy.stack.local_endpoint import local_endpoint

pytestmark = pytest.mark.timeout(120)


def test_job_from_zero_workers_completes_and_worker_stops_after_idle_timeout(tmp_path):
    with local_endpoint(tmp_path, idle_timeout=1, stop_grace=2) as ep:
        assert ep.workers()["summary"]["total"] == 0
        job = ep.api().run({"pipeline": "echo", "params": {"hello": "world"}})
        assert job["status"] == "IN_QUEUE"
        done = ep.wait_status(job["id"], timeout=30)
        assert done["status"] == "COMPLETED", done
        assert done["output"]["echo"] == {"hello": "world"}
        assert done["workerId"]
        assert done["delayTime"] >= 0 and done["executionTime"] >= 0

        def gone():
            info = ep.workers()
            return info["summary"]["total"] == 0 and info["workers"][0]["exitedAt"]

        ep.wait_for(gone, timeout=30, what="worker to stop")
        worker = ep.workers()["workers"][0]
        assert worker["state"] == "exited" and worker["jobsDone"] == 1
        health = ep.api().health()
        assert health["jobs"]["completed"] == 1
        assert health["workers"]["idle"] == 0 and health["workers"]["running"] == 0


def test_a_worker_the_endpoint_stops_is_not_explained_as_out_of_memory(tmp_path):
    """Stopping the endpoint (``make run``'s Ctrl-C) SIGKILLs a busy worker past its grace:
    exit 137, which alone reads "usually out of memory". The log says who stopped it."""
    with local_endpoint(tmp_path, stop_grace=1) as ep:
        job = ep.api().run({"pipeline": "echo", "params": {"sleep_s": 60}})

        def running():
            return any(w["state"] == "running" for w in ep.workers()["workers"])

        ep.wait_for(running, timeout=60, what="the worker to run the job")
        ep.process.send_signal(signal.SIGTERM)
        ep.process.wait(30)
        log = ep.log_path.read_text()
        assert f"job {job['id']} requeued once" in log, log
        assert "stopped by the endpoint (endpoint shutting down)" in log, log
        # "137" alone would match a log line's milliseconds: look for the exit code's words.
        assert "out of memory" not in log and "code 137" not in log, log
