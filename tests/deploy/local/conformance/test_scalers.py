"""Both RunPod scalers with a worker that is slow to start (a model loading before
``runpod.serverless.start``), and ``policy.lowPriority``, which never triggers scaling."""

from __future__ import annotations

import time

import pytest

from tests.deploy.local.conformance.conftest import endpoint

pytestmark = pytest.mark.timeout(180)

SLOW = {"STARTUP_DELAY": "3"}


def _summary(ep):
    return ep.workers()["summary"]


def test_queue_delay_starts_another_worker_while_the_first_is_still_starting(tmp_path):
    # RunPod adds a worker once a request has waited scalerValue seconds; a worker that
    # is still starting is not free, so the second starts before the first is ready.
    with endpoint(tmp_path, "async", env=SLOW, workers_max=2, scaler_value=1) as ep:
        api = ep.api()
        ids = [api.run({"mode": "sleep", "seconds": 0.5, "i": i})["id"] for i in range(2)]
        ep.wait_for(lambda: _summary(ep)["initializing"] == 2, 30, what="two starting workers")
        finals = [ep.wait_status(job_id, timeout=60) for job_id in ids]
        assert {f["status"] for f in finals} == {"COMPLETED"}
        assert ep.get("stats").json()["workers"]["started"] == 2


def test_request_count_starts_one_worker_per_scaler_value_jobs_at_once(tmp_path):
    with endpoint(
        tmp_path, "async", env=SLOW, workers_max=3, scaler="REQUEST_COUNT", scaler_value=2
    ) as ep:
        api = ep.api()
        ids = [api.run({"mode": "sleep", "seconds": 0.5, "i": i})["id"] for i in range(4)]
        # ceil(4 jobs / 2) = 2 workers, both starting together; never a third.
        ep.wait_for(lambda: _summary(ep)["initializing"] == 2, 30, what="two starting workers")
        finals = [ep.wait_status(job_id, timeout=60) for job_id in ids]
        assert {f["status"] for f in finals} == {"COMPLETED"}
        assert ep.get("stats").json()["workers"]["peak"] == 2


def test_low_priority_job_waits_for_a_worker_it_does_not_start(tmp_path):
    with endpoint(tmp_path, "async", workers_max=2) as ep:
        api = ep.api()
        low = api.run({"mode": "echo", "low": True}, policy={"lowPriority": True})
        time.sleep(1)  # a normal job starts a worker at once; this one must not
        assert _summary(ep)["total"] == 0
        assert ep.get(f"status/{low['id']}").json()["status"] == "IN_QUEUE"
        normal = api.run({"mode": "echo"})
        assert ep.wait_status(normal["id"], timeout=60)["status"] == "COMPLETED"
        assert ep.wait_status(low["id"], timeout=60)["status"] == "COMPLETED"


def test_queue_delay_adds_a_worker_for_one_request_waiting_behind_a_slow_start(tmp_path):
    # RunPod: "adds a worker when a request has waited scalerValue seconds". One request,
    # nothing else arriving: the endpoint must re-plan on its own timer, not on arrival.
    with endpoint(
        tmp_path, "async", env={"STARTUP_DELAY": "5"}, workers_max=2, scaler_value=1
    ) as ep:
        ep.api().run({"mode": "sleep", "seconds": 0.1})
        ep.wait_for(lambda: _summary(ep)["initializing"] == 2, 30, what="a second worker")
        assert ep.get("stats").json()["workers"]["started"] == 2
