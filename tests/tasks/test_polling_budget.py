"""More jobs in flight than the /status budget can poll every POLL_CAP_S: on real Redis, a
real Celery worker and the local endpoint, the endpoint never sees more /status requests in
any 10 s than the budget, and every job is polled within its effective cap."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.lifecycle.polling import effective_cap
from app.models import Attempt, AttemptState, Job, Status, utcnow
from app.settings import Settings
from tests.tasks.conftest import stack

BUDGET = 24  # per 10 s: 2 tickets a second
JOBS = 40
SAMPLE_S = 0.2


def _add_lost_jobs(s, runpod_ids: list[str]) -> list[str]:
    """Job rows IN_QUEUE whose poll messages are gone (as after a Redis flush)."""
    ids = []
    with s.app.app_context(), session_scope() as session:
        for runpod_id in runpod_ids:
            job = Job(
                id=f"inflight-{uuid.uuid4().hex[:20]}",
                status=Status.IN_QUEUE,
                pipeline="echo",
                params={},
                runpod_id=runpod_id,
                submitted_at=utcnow(),
                next_poll_at=utcnow() - timedelta(hours=1),
            )
            job.attempts.append(Attempt(number=1, state=AttemptState.SENT, runpod_id=runpod_id))
            session.add(job)
            ids.append(job.id)
        session.commit()
    return ids


def _poll_ages(s, started: float) -> list[float]:
    """Seconds since each job's latest poll (since ``started`` if never polled)."""
    now = time.time()
    with s.app.app_context(), session_scope() as session:
        stamps = session.scalars(select(Job.last_polled_at).where(Job.id.like("inflight-%")))
        return [now - (st.timestamp() if st else started) for st in stamps]


def _worst_10s(samples: list[tuple[float, int]]) -> int:
    """The most requests in a span of (just over) 10 s, from cumulative counter samples."""
    worst, j = 0, 0
    for t0, n0 in samples:
        while j < len(samples) and samples[j][0] - t0 < 10:
            j += 1
        if j == len(samples):
            break
        worst = max(worst, samples[j][1] - n0)
    return worst


@pytest.mark.timeout(240)
def test_every_job_polled_within_its_effective_cap_under_the_budget(tmp_path):
    extra = {"STATUS_BUDGET_PER_10S": str(BUDGET), "RECONCILE_INTERVAL_S": "600"}
    # Workers that never connect: every job stays IN_QUEUE at the endpoint.
    options = {"worker_command": "sleep 3600", "workers_max": 1}
    with stack(tmp_path, endpoint_options=options, extra_env=extra) as s:
        settings = Settings.from_env(s.env)
        api = s.endpoint.api()
        _add_lost_jobs(s, [api.run({"pipeline": "echo"})["id"] for _ in range(JOBS)])
        cap = effective_cap(settings, JOBS)
        assert cap > settings.poll_cap_s, "the budget, not POLL_CAP_S, sets the cap here"

        runner = s.app.test_cli_runner()
        health = runner.invoke(args=["admin", "health"])
        assert health.exit_code == 0, health.output
        assert f"{JOBS} in flight, each polled at least every {cap:.0f} s" in health.output

        before = s.endpoint_requests().get("status", 0)
        started = time.time()
        assert s.reconcile()["polls"] == JOBS
        samples = [(started, before)]
        worst_age, next_age_check = 0.0, 0.0
        while time.time() - started < cap + 8:  # one whole cap, plus margin
            time.sleep(SAMPLE_S)
            samples.append((time.time(), s.endpoint_requests().get("status", 0)))
            if time.time() > next_age_check:
                worst_age = max(worst_age, *_poll_ages(s, started))
                next_age_check = time.time() + 1.0
        ages = _poll_ages(s, started)
        worst_age = max(worst_age, *ages)

    assert _worst_10s(samples) <= BUDGET
    assert samples[-1][1] - before >= JOBS, "every job was polled at least once"
    assert worst_age <= cap, f"a job waited {worst_age:.1f} s for a poll; its cap is {cap:.0f} s"
