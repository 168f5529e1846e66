"""Issue 19: a job that would start past a budget is held, never sent, and starts once an
operator releases it."""

from __future__ import annotations

import pytest

from app.db import session_scope
from app.lifecycle.spend import sweep
from app.models import Job
from app.services import services
from app.web.present import job_json
from tests.tasks.conftest import stack

pytestmark = pytest.mark.timeout(240)

HELD = "waiting: the daily GPU budget of $0.01 is spent (resets at 00:00 UTC)"


def test_a_job_past_the_daily_budget_is_held_and_starts_after_release(tmp_path):
    env = {"BUDGET_USD_PER_DAY": "0.01", "GPU_PRICE_PER_SECOND": "0.05"}
    with stack(tmp_path, endpoint_options={"idle_timeout": 120}, extra_env=env) as s:
        first = s.upload()
        s.wait_job(first, "COMPLETED")
        with s.app.app_context(), session_scope() as session:
            sweep(session, services())  # the bill: a cold start at $0.05/s is past $0.01
        held = s.upload()
        s.worker.process.wait_until(
            lambda: s.job(held).diagnosis == HELD, "the job held by the budget", 60
        )
        job = s.job(held)
        assert job.status == "PENDING" and not job.attempts, "nothing was sent"
        assert HELD in s.page(held)
        with s.app.test_request_context(), session_scope() as session:
            assert job_json(session.get(Job, held))["message"] == HELD
        # A sweep re-sends lost submits of PENDING jobs: the budget still holds this one.
        s.reconcile()
        assert s.job(held).diagnosis == HELD and not s.job(held).attempts
        shown = s.app.test_cli_runner().invoke(args=["admin", "budget"])
        assert "day budget for all endpoints" in shown.output and "held jobs: 1" in shown.output
        released = s.app.test_cli_runner().invoke(args=["admin", "budget", "--release"])
        assert released.exit_code == 0 and "released 1 held job(s)" in released.output
        assert s.wait_job(held, "COMPLETED").status == "COMPLETED"


def test_raising_the_budget_sends_the_held_jobs(tmp_path):
    env = {"BUDGET_USD_PER_DAY": "0.01", "GPU_PRICE_PER_SECOND": "0.05"}
    with stack(tmp_path, endpoint_options={"idle_timeout": 120}, extra_env=env) as s:
        s.wait_job(s.upload(), "COMPLETED")
        with s.app.app_context(), session_scope() as session:
            sweep(session, services())
        held = s.upload()
        s.worker.process.wait_until(
            lambda: (s.job(held).diagnosis or "").startswith("waiting: the daily"), "held", 60
        )
        bad = s.app.test_cli_runner().invoke(args=["admin", "budget", "--set", "week=5"])
        assert bad.exit_code != 0 and "use day=USD or month=USD" in bad.output
        raised = s.app.test_cli_runner().invoke(args=["admin", "budget", "--set", "day=100"])
        assert raised.exit_code == 0, raised.output
        assert s.wait_job(held, "COMPLETED").status == "COMPLETED"
