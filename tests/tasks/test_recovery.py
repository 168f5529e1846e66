"""Crashes and lost messages: every job still reaches one terminal state, executed once."""

from __future__ import annotations

import pytest

from deploy.stack.services import celery_beat
from tests.tasks.conftest import stack

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("scope", ["", ":worker"], ids=["pool-process", "whole-worker"])
def test_worker_killed_between_claim_and_run(tmp_path, scope):
    with stack(tmp_path, extra_env={"TEST_CRASH_AT": f"after_claim{scope}"}) as s:
        job_id = s.upload()
        s.worker.process.wait_until(
            lambda: (s.tmp / "storage" / ".crashed-after_claim").exists(), "the crash", 60
        )
        if scope:
            s.worker.process.process.wait(timeout=10)
            s.worker.restart()
        job = s.wait_job(job_id, timeout=90, sweep=True)
        assert job.status == "COMPLETED", job.error
        assert [a.state for a in job.attempts] == ["FAILED", "SENT"]
        assert s.endpoint_requests()["run"] == 1


@pytest.mark.parametrize("scope", ["", ":worker"], ids=["pool-process", "whole-worker"])
def test_worker_killed_right_after_run(tmp_path, scope):
    with stack(tmp_path, extra_env={"TEST_CRASH_AT": f"after_run{scope}"}) as s:
        job_id = s.upload(sleep_s=1)
        s.worker.process.wait_until(
            lambda: (s.tmp / "storage" / ".crashed-after_run").exists(), "the crash", 60
        )
        if scope:
            s.worker.process.process.wait(timeout=10)
            s.worker.restart()
        job = s.wait_job(job_id, timeout=90, sweep=True)
        assert job.status == "COMPLETED", job.error
        assert len(job.attempts) == 1 and job.attempts[0].runpod_id == job.runpod_id
        assert s.endpoint_requests()["run"] == 1


def test_redis_flushed_with_jobs_in_flight(tmp_path):
    """Polls and submit messages vanish with Redis; beat's reconcile brings every job home."""
    with stack(tmp_path, extra_env={"USE_WEBHOOKS": "false"}) as s:
        running = s.upload(sleep_s=4)
        s.wait_job(running, "IN_PROGRESS", timeout=60)
        s.worker.kill()
        pending = [s.upload(), s.upload()]
        assert {s.job(j).status for j in pending} == {"PENDING"}
        s.redis.flush()
        s.worker.restart()
        with celery_beat(s.env, s.tmp):
            for job_id in [running, *pending]:
                job = s.wait_job(job_id, timeout=90)
                assert job.status == "COMPLETED", job.error
        assert s.endpoint_requests()["run"] == 3


def _make_unknown(s, job_id: str) -> None:
    """Leave the job as a submit whose POST /run timed out: SUBMITTING, attempt UNKNOWN."""
    from datetime import timedelta

    from app.db import session_scope
    from app.models import Attempt, AttemptState, Job, Status, utcnow

    with s.app.app_context(), session_scope() as session:
        job = session.get(Job, job_id)
        past = utcnow() - timedelta(seconds=30)
        job.status = Status.SUBMITTING
        job.updated_at = past
        session.add(Attempt(job=job, number=1, state=AttemptState.UNKNOWN, updated_at=past))
        session.commit()


def test_unknown_submit_is_resent_only_when_the_endpoint_shows_nothing(tmp_path):
    with stack(tmp_path, worker=False) as s:
        from deploy.stack.services import celery_worker

        unknown = s.upload()  # no Celery worker yet: the row stays PENDING
        _make_unknown(s, unknown)
        # While the endpoint has work, the unknown submit may be that work: wait.
        blocker = s.endpoint.api().run({"pipeline": "echo", "params": {"sleep_s": 4}})["id"]
        s.endpoint.wait_status(blocker, ["IN_PROGRESS"], timeout=60)
        s.reconcile()
        assert s.job(unknown).status == "SUBMITTING"
        s.endpoint.wait_status(blocker, timeout=60)
        with celery_worker(s.env, s.tmp) as worker:
            s.worker = worker
            job = s.wait_job(unknown, timeout=90, sweep=True)
        assert job.status == "COMPLETED", job.error
        assert [a.state for a in job.attempts] == ["FAILED", "SENT"]
        assert "endpoint shows no job" in job.attempts[0].error
