"""The real runpod 1.12.0 SDK on both sides: as the client and as the endpoint's workers."""

from __future__ import annotations

import json

import pytest
import runpod

from tests.deploy.local.conftest import sdk_worker_command
from tests.support.local_endpoint import local_endpoint

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


def test_raising_handler_fails_the_job_with_the_sdk_error_json(sdk_endpoint, client):
    job = client.run({"input": {"mode": "raise", "message": "bad frame 7"}})
    final = sdk_endpoint.wait_status(job.job_id)
    assert final["status"] == "FAILED"
    error = json.loads(final["error"])
    assert error["error_type"] == "<class 'ValueError'>"
    assert error["error_message"] == "bad frame 7"
    assert error["worker_id"] == final["workerId"]


def test_handler_returning_error_key_fails_and_keeps_the_rest(sdk_endpoint, client):
    job = client.run({"input": {"mode": "error", "message": "no face found"}})
    final = sdk_endpoint.wait_status(job.job_id)
    assert final["status"] == "FAILED"
    assert final["error"] == "no face found"
    assert final["output"] == {"partial": 1}


def test_progress_update_shows_as_output_while_in_progress(sdk_endpoint, client):
    job = client.run({"input": {"mode": "progress", "seconds": 2}})
    seen = sdk_endpoint.wait_for(
        lambda: (s := sdk_endpoint.get(f"status/{job.job_id}").json()).get("output") and s,
        timeout=20,
        what="progress",
    )
    assert seen["status"] == "IN_PROGRESS" and seen["output"] == {"percent": 50}
    assert job.output(timeout=30) == {"done": True}


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


def test_execution_timeout_fails_the_job_and_stops_the_worker(sdk_endpoint):
    # RunPod: past executionTimeout the job fails and the worker is stopped.
    api = sdk_endpoint.api()
    job = api.run({"mode": "sleep", "seconds": 60}, policy={"executionTimeout": 1500})
    final = sdk_endpoint.wait_status(job["id"], timeout=30)
    assert final["status"] == "TIMED_OUT"
    assert "execution timeout" in final["error"]

    def stopped():
        info = {w["id"]: w for w in sdk_endpoint.workers()["workers"]}[final["workerId"]]
        return info["exitedAt"] and info

    worker = sdk_endpoint.wait_for(stopped, timeout=30, what="the worker to be stopped")
    assert "execution timeout" in worker["stopReason"]
    assert sdk_endpoint.wait_status(api.run({"mode": "echo"})["id"])["status"] == "COMPLETED"


def test_retry_requeues_a_failed_job_under_the_same_id(sdk_endpoint):
    api = sdk_endpoint.api()
    job = api.run({"mode": "raise"})
    assert sdk_endpoint.wait_status(job["id"])["status"] == "FAILED"
    assert api.retry(job["id"]) == {"id": job["id"], "status": "IN_QUEUE"}
    again = sdk_endpoint.wait_status(job["id"])
    assert again["status"] == "FAILED" and again.get("retries") == 1
    done = api.run({"mode": "echo"})
    sdk_endpoint.wait_status(done["id"])
    refused = sdk_endpoint.post(f"retry/{done['id']}")
    assert refused.status_code == 400 and "only FAILED or TIMED_OUT" in refused.json()["error"]


def test_refresh_worker_replaces_the_worker(sdk_endpoint):
    api = sdk_endpoint.api()
    first = sdk_endpoint.wait_status(api.run({"mode": "refresh"})["id"])
    assert first["status"] == "COMPLETED"
    assert "refresh_worker" not in first["output"]
    second = sdk_endpoint.wait_status(api.run({"mode": "echo"})["id"], timeout=30)
    assert second["status"] == "COMPLETED"
    assert second["workerId"] != first["workerId"]
    assert second["output"]["pid"] != first["output"]["pid"]


def test_generator_handler_streams_and_aggregates(tmp_path, monkeypatch):
    with local_endpoint(
        tmp_path, worker_command=sdk_worker_command(), env={"SDK_WORKER_GENERATOR": "1"}
    ) as ep:
        monkeypatch.setattr(runpod, "endpoint_url_base", ep.base_url)
        client = runpod.Endpoint(ep.endpoint_id, api_key=ep.api_key)
        job = client.run({"input": {"chunks": 4, "gap": 0.3}})
        chunks = list(job.stream())
        assert chunks == [{"chunk": i} for i in range(4)]
        final = ep.wait_status(job.job_id)
        assert final["status"] == "COMPLETED"
        assert final["output"] == [{"chunk": i} for i in range(4)]
