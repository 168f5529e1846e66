"""Every handler shape the runpod SDK supports, driven by the SDK's own client; each
outcome is what RunPod documents (reference/runpod-sdk-protocol.md, runpod-api.md)."""

from __future__ import annotations

import json

import pytest

from tests.deploy.local.conformance.conftest import endpoint, sdk_client

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module", params=["sync", "async"])
def plain_ep(request, tmp_path_factory):
    with endpoint(
        tmp_path_factory.mktemp(request.param), request.param, workers_max=1, idle_timeout=30
    ) as ep:
        yield ep


def test_run_sync_and_status_through_the_sdk_client(plain_ep, monkeypatch):
    client = sdk_client(plain_ep, monkeypatch)
    assert client.run_sync({"input": {"mode": "echo", "n": 2}}, timeout=60)["echo"]["n"] == 2
    job = client.run({"input": {"mode": "echo", "n": 1}})
    assert job.output(timeout=60)["echo"] == {"mode": "echo", "n": 1}
    assert job.status() == "COMPLETED"


def test_raising_handler_fails_with_the_sdks_error_json(plain_ep):
    job = plain_ep.api().run({"mode": "raise", "message": "bad frame 7"})
    final = plain_ep.wait_status(job["id"], timeout=60)
    assert final["status"] == "FAILED"
    error = json.loads(final["error"])
    assert error["error_type"] == "<class 'ValueError'>"
    assert error["error_message"] == "bad frame 7"
    assert error["worker_id"] == final["workerId"]


def test_string_error_fails_and_keeps_the_output(plain_ep):
    final = plain_ep.wait_status(plain_ep.api().run({"mode": "error", "message": "no face"})["id"])
    assert final["status"] == "FAILED"
    assert final["error"] == "no face" and final["output"] == {"partial": 1}


def test_dict_error_ends_completed_without_output_as_on_runpod(plain_ep):
    # runpod-python#299: "if you use a dict, it will result in the job returning as
    # COMPLETED instead of FAILED without any output".
    final = plain_ep.wait_status(plain_ep.api().run({"mode": "error_dict"})["id"])
    assert final["status"] == "COMPLETED"
    assert "output" not in final and "error" not in final
    assert "non-string 'error'" in plain_ep.log_tail(200)


def test_retry_runs_a_failed_job_again_under_its_id(plain_ep):
    api = plain_ep.api()
    job = api.run({"mode": "raise"})
    assert plain_ep.wait_status(job["id"], timeout=60)["status"] == "FAILED"
    assert api.retry(job["id"]) == {"id": job["id"], "status": "IN_QUEUE"}
    again = plain_ep.wait_status(job["id"], timeout=60)
    assert again["status"] == "FAILED" and again["retries"] == 1


def test_progress_update_is_the_output_while_in_progress(plain_ep):
    job = plain_ep.api().run({"mode": "progress", "seconds": 3})
    seen = plain_ep.wait_for(
        lambda: (s := plain_ep.get(f"status/{job['id']}").json()).get("output") and s,
        timeout=60,
        what="progress",
    )
    assert seen["status"] == "IN_PROGRESS" and seen["output"] == {"percent": 50}
    assert plain_ep.wait_status(job["id"])["output"]["slept"] == 3


def test_refresh_worker_replaces_the_worker(plain_ep):
    api = plain_ep.api()
    first = plain_ep.wait_status(api.run({"mode": "refresh"})["id"], timeout=60)
    assert first["status"] == "COMPLETED" and "refresh_worker" not in first["output"]
    second = plain_ep.wait_status(api.run({"mode": "echo"})["id"], timeout=60)
    assert second["workerId"] != first["workerId"]
    assert second["output"]["pid"] != first["output"]["pid"]


@pytest.mark.parametrize(
    ("shape", "aggregate"),
    [("gen", False), ("gen", True), ("agen", False), ("agen", True)],
    ids=["generator", "generator-aggregate", "async-generator", "async-generator-aggregate"],
)
def test_generators_stream_and_aggregate_only_when_asked(tmp_path, monkeypatch, shape, aggregate):
    env = {"AGGREGATE": "1"} if aggregate else {}
    with endpoint(tmp_path, shape, env=env) as ep:
        client = sdk_client(ep, monkeypatch)
        job = client.run({"input": {"chunks": 4, "gap": 0.15}})
        assert list(job.stream()) == [{"chunk": i} for i in range(4)]
        final = ep.wait_status(job.job_id)
        assert final["status"] == "COMPLETED"
        # Without return_aggregate_stream the SDK posts an empty list as the output.
        assert final["output"] == ([{"chunk": i} for i in range(4)] if aggregate else [])
        if shape == "gen":
            failing = ep.api().run({"chunks": 3, "fail_at": 1})
            failed = ep.wait_status(failing["id"])
            assert failed["status"] == "FAILED" and "chunk 1 failed" in failed["error"]


def test_concurrency_modifier_takes_a_batch_and_runs_jobs_together(tmp_path):
    with endpoint(tmp_path, "batch", workers_max=1, idle_timeout=30) as ep:
        api = ep.api()
        ep.wait_status(api.run({"mode": "echo"})["id"], timeout=60)  # the worker is up
        ids = [api.run({"mode": "sleep", "seconds": 2, "i": i})["id"] for i in range(6)]
        ep.wait_for(
            lambda: len(max((w["currentJobs"] for w in ep.workers()["workers"]), key=len)) >= 2,
            timeout=30,
            what="one worker running two jobs at once",
        )
        finals = [ep.wait_status(job_id, timeout=60) for job_id in ids]
        assert {f["status"] for f in finals} == {"COMPLETED"}
        assert len({f["workerId"] for f in finals}) == 1
        assert ep.get("stats").json()["workerRequests"]["job-take-batch"] >= 1
