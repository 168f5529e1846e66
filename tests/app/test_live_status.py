"""Live status: the worker's progress callback, queue position, cold start and estimates."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from app.models import Attempt, AttemptState, Job, Snapshot, Status, utcnow
from tests.app.test_pages_and_api import only_job, sent, upload, webhook


def progress_path(app, job: Job) -> str:
    """The path and query of the progress URL the submit task put in the worker's input."""
    with app.app_context():
        from app.db import get_session
        from app.lifecycle.submission import worker_input
        from app.services import services

        session = get_session()
        row = session.get(Job, job.id)
        attempt = row.attempts[-1]
        body = worker_input(row, services().settings, services().storage, attempt)
    url = urlsplit(body["callbacks"]["progress"])
    assert url.geturl().startswith("http://127.0.0.1:5999/callbacks/")
    return f"{url.path}?{url.query}"


def row(app, job_id: str) -> Job:
    with app.app_context():
        from app.db import get_session

        job = get_session().get(Job, job_id)
        _ = job.attempts
        return job


def test_a_progress_callback_makes_the_job_running_and_shows_its_progress(app, client):
    upload(client)
    job = sent(app, only_job(app))
    path = progress_path(app, job)
    panel = client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)
    assert "running" not in panel

    update = {"phase": "echo", "message": "frame 3 of 10", "percent": 30}
    answer = client.post(path, json={"progress": update, "worker_id": "w-1", "job_id": "rp-1"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert row(app, job.id).status == Status.IN_PROGRESS
    panel = client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)
    assert "running on a GPU (30%)" in panel and "frame 3 of 10" in panel
    assert 'id="execution" data-elapsed=' in panel and "so far" in panel
    assert "w-1" in panel
    data = client.get(f"/jobs/{job.id}.json").get_json()
    assert data["status"] == "IN_PROGRESS" and data["progress"]["percent"] == 30
    assert data["started_at"]

    # Later polls keep the job running; the next callback moves the figure on.
    client.post(path, json={"progress": {"phase": "echo", "percent": 70}})
    assert "running on a GPU (70%)" in client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)


def test_progress_callbacks_refuse_forged_stale_and_bad_requests(app, client):
    upload(client)
    job = sent(app, only_job(app))
    path = progress_path(app, job)
    update = {"progress": {"percent": 10}}

    forged = path[:-4] + ("0000" if not path.endswith("0000") else "1111")
    assert client.post(forged, json=update).status_code == 403
    assert client.post(path.split("?")[0], json=update).status_code == 403
    other = path.replace(f"/callbacks/{row(app, job.id).attempts[-1].id}/", "/callbacks/999/")
    assert client.post(other, json=update).status_code == 403
    assert client.post(path, data="not json").status_code == 400
    assert client.post(path, json={"progress": {"x": "y" * 5000}}).status_code == 400
    assert (
        client.post(path, json={"progress": {"percent": 5}, "job_id": "rp-other"}).status_code
        == 410
    )
    assert row(app, job.id).status == Status.IN_QUEUE  # nothing above changed the job

    # A finished job, or a superseded attempt, answers 410: the worker stops sending.
    webhook(client, job, {"id": "rp-1", "status": "FAILED", "error": "boom"})
    assert client.post(path, json=update).status_code == 410
    assert row(app, job.id).status == Status.FAILED and row(app, job.id).progress is None


def test_a_superseded_attempt_cannot_touch_the_retried_job(app, client):
    upload(client)
    job = sent(app, only_job(app))
    old_path = progress_path(app, job)
    webhook(client, job, {"id": "rp-1", "status": "FAILED", "error": "boom"})
    with app.app_context():
        from app.db import get_session

        session = get_session()
        current = session.get(Job, job.id)
        assert client.post(f"/jobs/{job.id}/retry", data={"csrf_token": _token(client, job)})
        session.expire_all()
        current = session.get(Job, job.id)
        current.status = Status.IN_QUEUE
        session.add(Attempt(job=current, number=2, state=AttemptState.SENT, runpod_id="rp-2"))
        session.commit()
    assert client.post(old_path, json={"progress": {"percent": 50}}).status_code == 410
    assert row(app, job.id).status == Status.IN_QUEUE
    assert (
        client.post(progress_path(app, job), json={"progress": {"percent": 50}}).status_code == 200
    )
    assert row(app, job.id).status == Status.IN_PROGRESS


def _token(client, job: Job) -> str:
    from tests.app.conftest import csrf_token

    return csrf_token(client, f"/jobs/{job.id}")


def _queued(app, n: int) -> list[str]:
    with app.app_context():
        from app.db import get_session

        session = get_session()
        start = utcnow() - timedelta(minutes=5)
        jobs = [
            Job(pipeline="echo", status=Status.IN_QUEUE, submitted_at=start + timedelta(seconds=i))
            for i in range(n)
        ]
        session.add_all(jobs)
        session.commit()
        return [j.id for j in jobs]


def _snapshot(app, workers: dict) -> None:
    with app.app_context():
        from app.db import get_session

        session = get_session()
        session.merge(Snapshot(name="endpoint", data={"health": {"workers": workers, "jobs": {}}}))
        session.commit()


def _completed(app, seconds: list[float]) -> None:
    with app.app_context():
        from app.db import get_session

        session = get_session()
        now = utcnow()
        for i, s in enumerate(seconds):
            session.add(
                Job(
                    pipeline="echo",
                    status=Status.COMPLETED,
                    execution_ms=int(s * 1000),
                    finished_at=now - timedelta(minutes=i),
                )
            )
        session.commit()


def test_queued_jobs_say_how_many_are_ahead_with_an_estimate(app, client):
    _completed(app, [10, 12, 40])  # median 12 s
    ahead = _queued(app, 2)
    _snapshot(app, {"idle": 0, "running": 1, "initializing": 0})
    upload(client)
    job = sent(app, only_job_named(app, ahead))
    panel = client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)
    assert "waiting behind 2 jobs: 3 of 3 in the GPU queue" in panel
    assert "every GPU worker is busy" in panel
    assert "cold start" not in panel
    # Two jobs ahead on the one busy worker: it starts after 2 runs and ends after 3, as a
    # range from the quartiles of the recent runs (11 s and 26 s; the median is 12 s).
    assert "Starts in about 22–52 s, done in about 33–78 s (from the last 3 runs" in panel
    first = client.get(f"/jobs/{ahead[0]}/panel").get_data(as_text=True)
    assert "waiting for a busy GPU worker" in first and "1 of 3 in the GPU queue" in first
    assert "cold start" not in first


def test_a_queued_job_with_no_idle_worker_says_a_worker_is_starting(app, client):
    _snapshot(app, {"idle": 0, "running": 0, "initializing": 1})
    upload(client)
    job = sent(app, only_job(app))
    panel = client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)
    assert "a GPU worker is starting (cold start)" in panel
    assert "waiting behind" not in panel
    _snapshot(app, {"idle": 1, "running": 0})
    panel = client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)
    assert "an idle GPU worker is about to take it" in panel


def only_job_named(app, exclude: list[str]) -> Job:
    with app.app_context():
        from sqlalchemy import select

        from app.db import get_session

        query = select(Job).where(Job.id.not_in(exclude), Job.status == Status.PENDING)
        return get_session().scalars(query).one()


def test_retry_starts_a_clean_attempt_and_lists_both(app, client):
    upload(client)
    job = sent(app, only_job(app))
    client.post(progress_path(app, job), json={"progress": {"percent": 5}, "worker_id": "w-old"})
    failed = {
        "id": "rp-1",
        "status": "FAILED",
        "executionTime": 4000,
        "delayTime": 1500,
        "workerId": "w-old",
        "error": "out of luck",
    }
    webhook(client, job, failed)
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "4.0 s" in page and "$0.00076" in page

    assert (
        client.post(f"/jobs/{job.id}/retry", data={"csrf_token": _token(client, job)}).status_code
        == 303
    )
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    timings = page.split('id="timings"')[1].split("</table>")[0]
    assert "4.0 s" not in timings and "$0.00076" not in timings and "w-old" not in timings
    attempts = page.split('id="attempts"')[1].split("</table>")[0]
    assert attempts.count('class="attempt"') == 1  # the new one is not claimed yet
    assert "failed: out of luck" in attempts and "w-old" in attempts and "$0.00076" in attempts

    with app.app_context():
        from app.db import get_session

        session = get_session()
        row = session.get(Job, job.id)
        row.status = Status.SUBMITTING
        session.add(Attempt(job=row, number=2, state=AttemptState.UNKNOWN))
        session.commit()
    path = progress_path(app, job)
    client.post(path, json={"progress": {"percent": 20}, "worker_id": "w-new"})
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    attempts = page.split('id="attempts"')[1].split("</table>")[0]
    assert attempts.count('class="attempt"') == 2
    assert "running on a GPU (20%)" in attempts and "w-new" in attempts
    assert "failed: out of luck" in attempts


def test_edit_and_resubmit_reuses_the_file_with_the_parameters_filled_in(app, client, settings):
    import re
    from pathlib import Path

    from tests.app.conftest import csrf_token

    upload(client, **{"param.echo.sleep_s": "0.5"})
    job = sent(app, only_job(app))
    webhook(client, job, {"id": "rp-1", "status": "FAILED", "error": "bad sleep"})
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    link = re.search(r'id="resubmit" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    form = client.get(link).get_data(as_text=True)
    assert 'name="from_job" value="' + job.id in form and "clip.mp4" in form
    assert 'name="param.echo.sleep_s" value="0.5"' in form
    assert re.search(r'<option value="echo"[^>]*selected', form)

    token = csrf_token(client, link)
    data = {"csrf_token": token, "pipeline": "echo", "from_job": job.id, "param.echo.sleep_s": "2"}
    answer = client.post("/jobs", data=data, content_type="multipart/form-data")
    assert answer.status_code == 303, answer.get_data(as_text=True)
    new_id = answer.headers["Location"].rsplit("/", 1)[1]
    new = row(app, new_id)
    assert new.params == {"sleep_s": 2.0} and new.input_name == "clip.mp4"
    storage = Path(settings.storage_dir)
    assert (storage / new.input_key).read_bytes() == (storage / job.input_key).read_bytes()

    # Someone else cannot borrow the file by naming the job.
    other = app.test_client()
    data["csrf_token"] = csrf_token(other)
    refused = other.post("/jobs", data=data, content_type="multipart/form-data")
    assert refused.status_code == 400 and "no file" in refused.get_data(as_text=True)


def test_a_refused_upload_keeps_the_pipeline_and_the_values(app, client):
    from tests.app.conftest import csrf_token

    token = csrf_token(client)
    data = {"csrf_token": token, "pipeline": "echo", "param.echo.sleep_s": "-3"}
    data["file"] = (__import__("io").BytesIO(b"\x00\x00\x00\x18ftypmp42" * 10), "clip.mp4")
    answer = client.post("/jobs", data=data, content_type="multipart/form-data")
    assert answer.status_code == 400
    form = answer.get_data(as_text=True)
    assert 'id="error"' in form
    assert 'name="param.echo.sleep_s" value="-3"' in form
    assert __import__("re").search(r'<option value="echo"[^>]*selected', form)


def test_api_answers_use_one_timestamp_format_and_carry_their_urls(app, client):
    import io
    from datetime import datetime

    from tests.app.test_pages_and_api import AUTH, VIDEO

    created = client.post(
        "/api/jobs",
        data={"pipeline": "echo", "file": (io.BytesIO(VIDEO), "clip.mp4")},
        headers=AUTH,
        content_type="multipart/form-data",
    ).get_json()
    fetched = client.get(f"/api/jobs/{created['id']}", headers=AUTH).get_json()
    listed = client.get("/api/jobs", headers=AUTH).get_json()["jobs"][0]
    for answer in (created, fetched, listed):
        stamp = datetime.fromisoformat(answer["created_at"])
        assert stamp.utcoffset() is not None, answer["created_at"]
    assert created["created_at"] == fetched["created_at"] == listed["created_at"]
    urls = fetched["urls"]
    assert urls["page"] == f"http://127.0.0.1:5999/jobs/{created['id']}"
    assert urls["get"].endswith(f"/api/jobs/{created['id']}")
    assert urls["cancel"].endswith(f"/api/jobs/{created['id']}/cancel")
    assert urls["result"] is None and urls["retry"] is None


def test_api_list_refuses_bad_filters(client):
    from tests.app.test_pages_and_api import AUTH

    for query in ("status=bogus", "limit=0", "limit=x", "pipeline=nope", "colour=red"):
        answer = client.get(f"/api/jobs?{query}", headers=AUTH)
        assert answer.status_code == 400, query
        assert answer.get_json()["error"]
    assert client.get("/api/jobs?status=failed&pipeline=echo", headers=AUTH).status_code == 200


def test_a_too_large_upload_comes_back_as_the_form_with_the_limit(client, settings):
    import io

    from tests.app.conftest import csrf_token, storage_files

    data = {"csrf_token": csrf_token(client), "pipeline": "echo"}
    data["file"] = (io.BytesIO(b"\x00" * (settings.max_upload_bytes + 1)), "big.mp4")
    answer = client.post("/jobs", data=data, content_type="multipart/form-data")
    assert answer.status_code == 413
    page = answer.get_data(as_text=True)
    assert 'id="upload-form"' in page
    assert "larger than the limit of 256 KiB; nothing was stored" in page
    assert not [p for p in storage_files(settings) if ".staging" not in str(p)]


def test_the_estimate_plays_the_queue_forward_on_every_worker():
    from app.web.live import play_forward

    # Two workers, 3 s and 8 s left on their jobs; three 12 s jobs ahead take the first free
    # worker each (at 3, 8 and 15 s); this one starts when the next is free (20 s).
    assert play_forward([3, 8], 2, [12, 12, 12], 12) == (20, 32)
    # An idle worker (no running job) takes it at once.
    assert play_forward([5], 2, [], 10) == (0, 10)
