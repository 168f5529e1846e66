"""Exactly once without RunPod's help: the worker claims its attempt (issue 9)."""

from __future__ import annotations

import pytest

from tests.tasks.conftest import stack

pytestmark = pytest.mark.timeout(180)


def test_lost_run_answer_without_webhooks_is_adopted_with_its_result(tmp_path):
    """POST /run reached the endpoint but its answer was lost (the task died right after),
    and no webhook will come: the worker's claim tells the app which RunPod job runs the
    attempt, so nothing is sent twice and the result keeps its JSON, timings and cost."""
    env = {"TEST_CRASH_AT": "after_run", "USE_WEBHOOKS": "false"}
    with stack(tmp_path, extra_env=env) as s:
        job_id = s.upload(sleep_s=2)
        s.worker.process.wait_until(
            lambda: (s.tmp / "storage" / ".crashed-after_run").exists(), "the crash", 60
        )
        job = s.wait_job(job_id, timeout=120, sweep=True)
        assert job.status == "COMPLETED", job.error
        assert s.endpoint_requests()["run"] == 1
        assert [(a.state, a.runpod_id) for a in job.attempts] == [("SENT", job.runpod_id)]
        assert job.attempts[0].claimed_runpod_id == job.runpod_id
        assert job.result and "metrics" in job.result
        assert job.execution_ms is not None and job.cost_usd is not None


def test_a_job_finished_at_the_endpoint_is_not_shown_as_a_cold_start(tmp_path):
    """Its poll is far off (as after a Redis loss): the endpoint's own counts show nothing
    queued, so the sweep says "checking" and fetches the status now, not "cold start"."""
    env = {"USE_WEBHOOKS": "false", "POLL_BASE_S": "600", "POLL_CAP_S": "600"}
    with stack(tmp_path, extra_env=env) as s:
        job_id = s.upload()
        job = s.wait_job(job_id, "IN_QUEUE", "IN_PROGRESS", timeout=60)
        s.endpoint.wait_status(job.runpod_id, timeout=60)  # done there; we do not know
        assert s.job(job_id).status in ("IN_QUEUE", "IN_PROGRESS")
        s.reconcile()
        page = s.page(job_id)
        assert "cold start" not in page and "no GPU capacity" not in page
        job = s.wait_job(job_id, timeout=120, sweep=True)  # beat's sweeps, made now
        assert job.status == "COMPLETED", job.error
