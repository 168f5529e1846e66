"""Issue 19: the cost a job page shows is the bill, as the local endpoint recorded its
worker's life, to the second: start-up to the job that woke the worker, each job its span."""

from __future__ import annotations

import re

import pytest

from app.db import session_scope
from app.endpoints import billing
from app.lifecycle.spend import sweep
from app.services import services
from tests.tasks.conftest import stack

pytestmark = pytest.mark.timeout(240)


def billed_on_page(s, job_id: str) -> float:
    cell = re.search(r'id="billed-cost">\$([0-9.]+)', s.page(job_id))
    assert cell, "the job page shows no billed cost"
    return float(cell.group(1))


def test_cold_warm_and_shared_jobs_cost_what_their_worker_billed(tmp_path):
    with stack(tmp_path, endpoint_options={"idle_timeout": 120}) as s:
        cold = s.upload()
        s.wait_job(cold, "COMPLETED")
        warm = s.upload()
        s.wait_job(warm, "COMPLETED")
        # Two jobs at once on the one worker (workers_max 1): they share its time.
        pair = [s.upload(), s.upload()]
        for job_id in pair:
            s.wait_job(job_id, "COMPLETED")
        with s.app.app_context(), session_scope() as session:
            sweep(session, services())
            price = billing.price(services().settings)
        bill = s.endpoint.get("billing").json()
        (worker,) = bill["workers"]
        jobs = {job_id: s.job(job_id) for job_id in (cold, warm, *pair)}
        assert {job.worker_id for job in jobs.values()} == {worker["workerId"]}
        assert worker["wokenBy"] == jobs[cold].runpod_id
        for job_id, job in jobs.items():
            recorded = bill["jobs"][job.runpod_id]  # seconds the endpoint attributes to it
            # Shown to the micro-dollar; equal to the record x price within one second.
            assert billed_on_page(s, job_id) == pytest.approx(recorded * price, abs=price)
            assert job.cost_usd == pytest.approx(recorded * price, abs=1e-6)
        # The cold job carries the worker's start-up; the warm one only its run.
        assert bill["jobs"][jobs[cold].runpod_id] >= worker["startupSeconds"]
        page = s.page(cold)
        assert f"start {worker['startupSeconds']:.1f} s" in page
        assert "start 0.0 s" in s.page(warm)
        # The worker is still up (idle): the idle seconds so far are charged to idle.
        assert bill["idleSeconds"] > 0
