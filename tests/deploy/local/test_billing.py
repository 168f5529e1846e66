"""Each worker's billed life as the local endpoint records it, read through ``/billing``:
start, ready, each job's span, idle, stop and exit code, every second attributed."""

from __future__ import annotations

import pytest

from deploy.stack.local_endpoint import local_endpoint
from tests.deploy.local.conftest import sdk_worker_command

pytestmark = pytest.mark.timeout(120)


def test_a_cold_and_a_warm_job_and_the_idle_tail_are_billed_to_the_second(tmp_path):
    with local_endpoint(
        tmp_path, worker_command=sdk_worker_command(), idle_timeout=1, stop_grace=2
    ) as ep:
        api = ep.api()
        cold = api.run({"mode": "sleep", "seconds": 0.3})["id"]
        assert ep.wait_status(cold)["status"] == "COMPLETED"
        warm = api.run({"mode": "echo"})["id"]
        assert ep.wait_status(warm)["status"] == "COMPLETED"
        bill = ep.wait_for(
            lambda: (b := ep.get("billing").json())["workers"][0]["exitedAt"] and b,
            30,
            what="the worker stopped after its idle timeout",
        )
        (worker,) = bill["workers"]
        assert worker["exitCode"] == 0 and worker["stopReason"].startswith("idle for 1s")
        assert [j["jobId"] for j in worker["jobs"]] == [cold, warm]
        assert worker["wokenBy"] == cold and worker["startupSeconds"] > 0
        # The worker's whole life, start to exit, is billed and attributed: the cold job
        # carries the start-up, the warm one only its run, the rest is idle.
        billed = worker["exitedAt"] - worker["startedAt"]
        assert worker["billedSeconds"] == pytest.approx(billed, abs=0.002)
        parts = bill["jobs"][cold] + bill["jobs"][warm] + bill["idleSeconds"]
        assert parts == pytest.approx(billed, abs=0.002)
        spans = {j["jobId"]: j["seconds"] for j in worker["jobs"]}
        assert bill["jobs"][cold] == pytest.approx(
            worker["startupSeconds"] + spans[cold], abs=0.002
        )
        assert bill["jobs"][warm] == pytest.approx(spans[warm], abs=0.002)
        assert bill["idleSeconds"] >= 1  # the idle timeout before the stop


def test_billing_refuses_a_bad_since_and_survives_a_restart(tmp_path):
    with local_endpoint(tmp_path, worker_command=sdk_worker_command(), idle_timeout=30) as ep:
        assert ep.get("billing", params={"since": "yesterday"}).status_code == 400
        job = ep.api().run({"mode": "echo"})["id"]
        ep.wait_status(job)
        ep.kill()  # kill -9: the worker dies with it
        ep.start()
        (worker,) = ep.get("billing").json()["workers"]
        assert worker["jobs"][0]["jobId"] == job and worker["exitedAt"] is not None
        assert worker["stopReason"] == "the endpoint process died"
