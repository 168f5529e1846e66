"""A job's life on the endpoint as RunPod documents it: cancel, ttl and execution timeout
while the handler runs, purge with running jobs, retry, a worker dying mid-job; and
what each leaves the worker doing (busy until the SDK says the job ended)."""

from __future__ import annotations

import pytest

from tests.deploy.local.conformance.conftest import endpoint

pytestmark = pytest.mark.timeout(180)


def _health_workers(ep):
    return ep.api().health()["workers"]


def _worker(ep, worker_id):
    return {w["id"]: w for w in ep.workers()["workers"]}[worker_id]


def test_cancelled_sync_handler_keeps_its_worker_busy_so_the_next_job_gets_another(tmp_path):
    # A sync handler cannot be interrupted: it runs to its end after a cancel. The SDK's
    # pings keep listing the job, so the worker is busy, not idle, and QUEUE_DELAY
    # starts a second worker for the next job instead of leaving it to wait.
    done_file = tmp_path / "first-done"
    with endpoint(tmp_path / "ep", "sync", workers_max=2, scaler_value=1) as ep:
        api = ep.api()
        first = api.run({"mode": "sleep", "seconds": 60, "done_file": str(done_file)})
        running = ep.wait_status(first["id"], {"IN_PROGRESS"}, timeout=60)
        assert api.cancel(first["id"])["status"] == "CANCELLED"
        workers = _health_workers(ep)
        assert workers["running"] == 1 and workers["idle"] == 0
        second = ep.wait_status(api.run({"mode": "echo"})["id"], timeout=60)
        assert second["status"] == "COMPLETED"
        assert second["workerId"] != running["workerId"]
        assert not done_file.exists()  # the cancelled handler is still running
        assert _worker(ep, running["workerId"])["stoppedJobsStillRunning"] == [first["id"]]


def test_cancelled_async_handler_is_stopped_and_its_worker_is_idle_again(tmp_path):
    with endpoint(tmp_path, "async", workers_min=1, idle_timeout=60) as ep:
        api = ep.api()
        job = api.run({"mode": "sleep", "seconds": 60})
        running = ep.wait_status(job["id"], {"IN_PROGRESS"}, timeout=60)
        assert api.cancel(job["id"])["status"] == "CANCELLED"
        ep.wait_for(lambda: _health_workers(ep)["idle"] == 1, 30, what="the worker idle")
        nxt = ep.wait_status(api.run({"mode": "echo"})["id"], timeout=30)
        assert nxt["workerId"] == running["workerId"]


def test_ttl_expiring_while_running_deletes_the_job_and_frees_the_worker(tmp_path):
    with endpoint(tmp_path, "async", workers_min=1, min_ttl=1, idle_timeout=60) as ep:
        ep.wait_for(lambda: _health_workers(ep)["idle"] == 1, 60, what="a warm worker")
        api = ep.api()
        job = api.run({"mode": "sleep", "seconds": 60}, policy={"ttl": 3000})
        running = ep.wait_status(job["id"], {"IN_PROGRESS"}, timeout=10)
        # RunPod: the ttl covers queue and run time; past it the job is deleted (404).
        ep.wait_for(lambda: ep.get(f"status/{job['id']}").status_code == 404, 30, what="ttl")
        # The SDK stops the task; its worker is idle again, not "running" for ever.
        ep.wait_for(lambda: _health_workers(ep)["idle"] == 1, 30, what="the worker idle")
        assert _health_workers(ep)["running"] == 0
        nxt = ep.wait_status(api.run({"mode": "echo"})["id"], timeout=30)
        assert nxt["status"] == "COMPLETED" and nxt["workerId"] == running["workerId"]


def test_execution_timeout_fails_the_job_and_stops_a_sync_handlers_worker(tmp_path):
    with endpoint(tmp_path, "sync", min_execution_timeout=1, idle_timeout=60) as ep:
        api = ep.api()
        job = api.run({"mode": "sleep", "seconds": 60}, policy={"executionTimeout": 2000})
        final = ep.wait_status(job["id"], timeout=60)
        assert final["status"] == "TIMED_OUT" and "execution timeout" in final["error"]
        worker = ep.wait_for(
            lambda: (w := _worker(ep, final["workerId"]))["exitedAt"] and w, 30, what="stop"
        )
        assert "execution timeout" in worker["stopReason"]
        nxt = ep.wait_status(api.run({"mode": "echo"})["id"], timeout=60)
        assert nxt["status"] == "COMPLETED" and nxt["workerId"] != final["workerId"]


def test_purge_removes_queued_jobs_and_leaves_running_ones(tmp_path):
    with endpoint(tmp_path, "async", workers_max=1) as ep:
        api = ep.api()
        running = api.run({"mode": "sleep", "seconds": 3})
        ep.wait_status(running["id"], {"IN_PROGRESS"}, timeout=60)
        queued = [api.run({"mode": "echo", "i": i})["id"] for i in range(3)]
        # One slot: the SDK worker takes nothing more while its one job runs.
        assert ep.post("purge-queue").json() == {"removed": 3, "status": "completed"}
        for job_id in queued:
            assert ep.get(f"status/{job_id}").status_code == 404
        assert ep.wait_status(running["id"], timeout=30)["status"] == "COMPLETED"


def test_worker_dying_mid_job_requeues_the_job_once(tmp_path):
    with endpoint(tmp_path, "sync", idle_timeout=60) as ep:
        job = ep.api().run({"mode": "crash", "code": 3})
        final = ep.wait_status(job["id"], timeout=90)
        assert final["status"] == "FAILED"
        assert "exited with code 3" in final["error"] and "requeued once" in final["error"]
        crashed = [w for w in ep.workers()["workers"] if w["exitCode"] == 3]
        assert len(crashed) == 2 and all(w["state"] == "unhealthy" for w in crashed)
