"""The per-attempt claim (invariant 3): a worker claims its attempt before running, so a
second RunPod job for the same attempt, or a lost one that turns up late, never runs."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.models import Attempt, AttemptState, Job, Status, utcnow
from app.services import services_of
from tests.app.test_pages_and_api import only_job, sent, upload


def _claim_url(app, settings, attempt_id: int) -> str:
    from app.lifecycle.submission import callback_url

    url = callback_url(settings, attempt_id, "claim")
    assert url.startswith(f"{settings.public_base_url}/callbacks/{attempt_id}/claim?exp=")
    return url.removeprefix(settings.public_base_url)


def _attempts(app, job_id: str) -> list[Attempt]:
    with app.app_context():
        from app.db import get_session

        return list(get_session().scalars(select(Attempt).where(Attempt.job_id == job_id)))


def _unknown(app, job_id: str, age_s: float = 0) -> int:
    """The submit's POST /run outcome is unknown: SUBMITTING, attempt UNKNOWN, no id."""
    with app.app_context():
        from app.db import get_session

        session = get_session()
        job = session.get(Job, job_id)
        past = utcnow() - timedelta(seconds=age_s)
        job.status = Status.SUBMITTING
        job.updated_at = past
        attempt = Attempt(job=job, number=1, state=AttemptState.UNKNOWN, updated_at=past)
        session.add(attempt)
        session.commit()
        return attempt.id


def test_the_job_input_carries_a_signed_claim_url(app, client, settings):
    upload(client)
    job = only_job(app)
    attempt_id = _unknown(app, job.id)
    with app.app_context():
        from app.db import get_session
        from app.lifecycle.submission import worker_input
        from app.services import services

        session = get_session()
        body = worker_input(
            session.get(Job, job.id), settings, services().storage, session.get(Attempt, attempt_id)
        )
    assert set(body["callbacks"]) == {"claim", "progress"}
    claim = body["callbacks"]["claim"].removeprefix(settings.public_base_url)
    assert claim.startswith(f"/callbacks/{attempt_id}/claim?")
    forged = claim.replace(f"/callbacks/{attempt_id}/", f"/callbacks/{attempt_id + 1}/")
    assert client.post(forged, json={"runpod_id": "rp-x"}).status_code == 403
    assert client.post(claim.split("?")[0], json={"runpod_id": "rp-x"}).status_code == 403


def test_first_claim_holds_repeats_pass_and_a_second_runpod_job_is_a_duplicate(
    app, client, settings
):
    upload(client)
    job = sent(app, only_job(app), "rp-1")
    (attempt,) = _attempts(app, job.id)
    url = _claim_url(app, settings, attempt.id)
    first = client.post(url, json={"runpod_id": "rp-1"})
    assert first.status_code == 200 and first.json["claim"] == "held"
    assert only_job(app).status == Status.IN_PROGRESS  # a worker took it
    assert client.post(url, json={"runpod_id": "rp-1"}).status_code == 200
    duplicate = client.post(url, json={"runpod_id": "rp-2"})
    assert duplicate.status_code == 409 and "duplicate" in duplicate.json["message"]
    (attempt,) = _attempts(app, job.id)
    assert attempt.claimed_runpod_id == "rp-1"
    assert only_job(app).runpod_id == "rp-1"


def test_a_claim_adopts_a_submit_whose_answer_was_lost(app, client, settings, enqueued):
    upload(client)
    job = only_job(app)
    attempt_id = _unknown(app, job.id)
    assert (
        client.post(_claim_url(app, settings, attempt_id), json={"runpod_id": "rp-7"}).status_code
        == 200
    )
    job = only_job(app)
    assert job.status == Status.IN_PROGRESS and job.runpod_id == "rp-7"
    assert [(a.state, a.runpod_id) for a in _attempts(app, job.id)] == [("SENT", "rp-7")]
    assert any(call[0] == "tasks.poll" and call[1] == job.id for call in enqueued)


def test_reconcile_adopts_a_claimed_unknown_submit_instead_of_resending(
    app, client, settings, enqueued
):
    from app.lifecycle.claims import claim

    upload(client)
    job = only_job(app)
    attempt_id = _unknown(app, job.id, age_s=3600)
    with app.app_context():
        from app.db import get_session
        from app.services import services

        # The claim landed but applying its status did not (the web process died then).
        claim(get_session(), attempt_id, "rp-5", services().replace(settings=settings))
        session = get_session()
        row = session.get(Job, job.id)
        row.status, row.runpod_id = Status.SUBMITTING, None
        attempt = session.get(Attempt, attempt_id)
        attempt.state, attempt.runpod_id = AttemptState.UNKNOWN, None
        session.commit()
    enqueued.clear()
    _sweep(app, settings)
    job = only_job(app)
    assert job.status == Status.IN_PROGRESS and job.runpod_id == "rp-5"
    assert ("tasks.submit", job.id) not in enqueued
    assert [a.number for a in _attempts(app, job.id)] == [1]


def _sweep(app, settings, **changes) -> dict:
    from app.lifecycle.reconcile import reconcile

    quick = settings.replace(
        submit_grace_s=0, unknown_submit_grace_s=0, unknown_submit_max_s=60, **changes
    )
    with app.app_context():
        from app.db import get_session

        return reconcile(get_session(), services_of(app).replace(settings=quick))


def test_an_unclaimed_unknown_submit_is_resent_in_bounded_time_and_the_lost_job_never_runs(
    app, client, settings, enqueued
):
    upload(client)
    job = only_job(app)
    attempt_id = _unknown(app, job.id, age_s=10)
    enqueued.clear()
    # The endpoint cannot even be asked (busy or unreachable): inside the bound, wait.
    _sweep(app, settings)
    assert only_job(app).status == Status.SUBMITTING
    _unknown_age(app, attempt_id, 120)
    counts = _sweep(app, settings)
    assert counts["unknown"] == 1 and ("tasks.submit", job.id) in enqueued
    assert only_job(app).status == Status.PENDING
    # The lost RunPod job reaches a worker after all: the claim refuses it.
    late = client.post(_claim_url(app, settings, attempt_id), json={"runpod_id": "rp-lost"})
    assert late.status_code == 410 and late.json["claim"] == "gone"
    assert only_job(app).status == Status.PENDING and only_job(app).runpod_id is None


def test_a_resend_whose_task_died_before_adding_its_attempt_is_sent_again(
    app, client, settings, enqueued
):
    from app.lifecycle.submission import claim as take

    upload(client)
    job = only_job(app)
    _unknown_age(app, _unknown(app, job.id), 120)
    _sweep(app, settings)  # no claim came: attempt 1 closed, the job PENDING to be resent
    assert only_job(app).status == Status.PENDING
    # The resend task takes the job; its Celery worker is killed before attempt 2 exists.
    with app.app_context():
        from app.db import get_session

        assert take(get_session(), job.id)
    enqueued.clear()
    counts = _sweep(app, settings)
    assert counts["reclaimed"] == 1 and ("tasks.submit", job.id) in enqueued
    assert only_job(app).status == Status.PENDING
    assert [a.state for a in _attempts(app, job.id)] == [AttemptState.FAILED]


def _unknown_age(app, attempt_id: int, age_s: float) -> None:
    with app.app_context():
        from app.db import get_session

        session = get_session()
        session.get(Attempt, attempt_id).updated_at = utcnow() - timedelta(seconds=age_s)
        session.commit()


def test_cancelling_an_unknown_submit_is_immediate_and_a_late_claim_gets_410(app, client, settings):
    from app.lifecycle.reconcile import cancel

    upload(client)
    job = only_job(app)
    attempt_id = _unknown(app, job.id)
    with app.app_context():
        from app.db import get_session
        from app.services import services

        cancel(get_session(), job.id, services().replace(settings=settings))
    assert only_job(app).status == Status.CANCELLED
    late = client.post(_claim_url(app, settings, attempt_id), json={"runpod_id": "rp-late"})
    assert late.status_code == 410
    assert only_job(app).status == Status.CANCELLED


def test_a_claim_for_a_finished_job_is_gone(app, client, settings):
    upload(client)
    job = sent(app, only_job(app), "rp-1")
    client.post(f"/webhooks/{job.id}/{job.webhook_token}", json={"id": "rp-1", "status": "FAILED"})
    (attempt,) = _attempts(app, job.id)
    answer = client.post(_claim_url(app, settings, attempt.id), json={"runpod_id": "rp-1"})
    assert answer.status_code == 410


def test_a_failure_that_was_the_apps_own_is_retried_once(app, client, enqueued):
    upload(client)
    job = sent(app, only_job(app), "rp-1")
    outage = {
        "id": "rp-1",
        "status": "FAILED",
        "error": "output.put_url: could not upload to http://app/files/x after 9 attempts",
        "output": {"error_kind": "storage_unreachable"},
    }
    enqueued.clear()
    client.post(f"/webhooks/{job.id}/{job.webhook_token}", json=outage)
    job = only_job(app)
    assert job.status == Status.PENDING and job.auto_retries == 1
    assert enqueued == [("tasks.submit", job.id)]
    # The second attempt fails the same way: it stays failed, saying why.
    job = sent_again(app, job, "rp-2")
    client.post(f"/webhooks/{job.id}/{job.webhook_token}", json={**outage, "id": "rp-2"})
    job = only_job(app)
    assert job.status == Status.FAILED and "could not upload" in job.error
    assert enqueued == [("tasks.submit", job.id)]


def test_an_ordinary_failure_is_not_retried(app, client, enqueued):
    upload(client)
    job = sent(app, only_job(app), "rp-1")
    enqueued.clear()
    bad = {"id": "rp-1", "status": "FAILED", "error": "params: sleep_s must be a number"}
    client.post(f"/webhooks/{job.id}/{job.webhook_token}", json=bad)
    assert only_job(app).status == Status.FAILED and enqueued == []


def sent_again(app, job: Job, runpod_id: str) -> Job:
    with app.app_context():
        from app.db import get_session
        from app.lifecycle.status import apply_status
        from app.services import services

        session = get_session()
        job = session.get(Job, job.id)
        job.status = Status.SUBMITTING
        session.add(Attempt(job=job, number=len(job.attempts) + 1, state=AttemptState.UNKNOWN))
        session.commit()
        payload = {"id": runpod_id, "status": "IN_QUEUE"}
        apply_status(
            session,
            job,
            payload,
            "submit",
            services(),
        )
        return job


def test_a_job_the_endpoint_no_longer_queues_is_not_blamed_on_capacity():
    from app.endpoints.diagnosis import CHECKING, NO_CAPACITY, diagnose

    throttled = {"workers": {"throttled": 2, "running": 0}}
    assert diagnose({**throttled, "jobs": {"inQueue": 1, "inProgress": 0}}, None, 1) == (
        NO_CAPACITY
    )
    # After a Redis loss the job finished at the endpoint but its poll is late: the
    # endpoint's own counts say nothing waits there, so nothing blames capacity.
    finished = {**throttled, "jobs": {"inQueue": 0, "inProgress": 0, "completed": 5}}
    assert diagnose(finished, None, 1) == CHECKING


def test_callback_urls_are_redacted_in_log_lines(settings):
    """Access logs carry request lines: the one redactor hides the claim's signature."""
    from app.lifecycle.submission import callback_url
    from app.observability import redact

    url = callback_url(settings, 41, "claim")
    signature = url.split("sig=")[1]
    line = f'127.0.0.1 - - "POST {url.removeprefix(settings.public_base_url)} HTTP/1.1" 200'
    assert signature not in redact(line) and "/callbacks/41/claim" in redact(line)


def test_cancelling_an_unknown_submit_from_the_page_is_immediate(app, client, settings, enqueued):
    from tests.app.conftest import csrf_token

    upload(client)
    job = only_job(app)
    attempt_id = _unknown(app, job.id)
    enqueued.clear()
    token = csrf_token(client, f"/jobs/{job.id}")
    assert client.post(f"/jobs/{job.id}/cancel", data={"csrf_token": token}).status_code == 303
    assert only_job(app).status == Status.CANCELLED and enqueued == []
    late = client.post(_claim_url(app, settings, attempt_id), json={"runpod_id": "rp-late"})
    assert late.status_code == 410
