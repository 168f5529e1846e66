"""The real runpod 1.12.0 SDK on both sides: as the client and as the endpoint's workers.

Every handler shape and outcome is in ``conformance/``; these cover the SDK client's calls.
"""

from __future__ import annotations

import pytest
import runpod

from deploy.stack.local_endpoint import local_endpoint

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def client(sdk_endpoint, monkeypatch):
    monkeypatch.setattr(runpod, "endpoint_url_base", sdk_endpoint.base_url)
    return runpod.Endpoint(sdk_endpoint.endpoint_id, api_key=sdk_endpoint.api_key)


def test_run_status_output_and_run_sync(client):
    job = client.run({"input": {"mode": "echo", "n": 1}})
    assert job.output(timeout=30)["echo"] == {"mode": "echo", "n": 1}
    assert job.status() == "COMPLETED"
    assert client.run_sync({"input": {"mode": "echo", "n": 2}}, timeout=30)["echo"]["n"] == 2


def test_health_counts_jobs_and_workers(client):
    client.run_sync({"input": {"mode": "echo"}}, timeout=30)
    health = client.health()
    assert health["jobs"]["completed"] >= 1
    assert set(health["workers"]) >= {"idle", "initializing", "ready", "running", "throttled"}
    assert health["workers"]["idle"] + health["workers"]["running"] == 1


def test_cancel_a_running_job_stops_the_workers_task(sdk_endpoint, client):
    job = client.run({"input": {"mode": "sleep", "seconds": 30}})
    sdk_endpoint.wait_status(job.job_id, {"IN_PROGRESS"})
    assert job.cancel()["status"] == "CANCELLED"
    assert sdk_endpoint.get(f"status/{job.job_id}").json()["status"] == "CANCELLED"
    worker_id = sdk_endpoint.get(f"status/{job.job_id}").json()["workerId"]

    def stopped():
        lines = sdk_endpoint.get(f"workers/{worker_id}/logs", params={"lines": 200}).json()
        return any("Job stopped" in line and job.job_id in line for line in lines["lines"])

    sdk_endpoint.wait_for(stopped, timeout=10, what="the worker to stop the task")
    assert client.run_sync({"input": {"mode": "echo"}}, timeout=30)["echo"]


def test_cancel_and_purge_queued_jobs(tmp_path, monkeypatch):
    # A worker command that never starts keeps jobs queued (the crash loop is far off).
    with local_endpoint(
        tmp_path, worker_command="sleep 60", crash_loop_threshold=100, stop_grace=1
    ) as ep:
        monkeypatch.setattr(runpod, "endpoint_url_base", ep.base_url)
        client = runpod.Endpoint(ep.endpoint_id, api_key=ep.api_key)
        jobs = [client.run({"input": {"mode": "echo", "i": i}}) for i in range(3)]
        assert jobs[0].cancel()["status"] == "CANCELLED"
        assert client.purge_queue() == {"removed": 2, "status": "completed"}
        for job in jobs[1:]:
            resp = ep.get(f"status/{job.job_id}")
            assert resp.status_code == 404
            assert resp.json() == {"error": "request does not exist"}
        assert ep.get(f"status/{jobs[0].job_id}").json()["status"] == "CANCELLED"
        assert client.health()["jobs"]["inQueue"] == 0
