"""What a person and a script see: upload → job page, live statuses, results, API, admin."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from sqlalchemy import select

from app.models import AttemptState, Job, Status
from tests.app.conftest import API_TOKEN, csrf_token, login_admin

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def upload(client, **fields):
    token = csrf_token(client)
    data = {"csrf_token": token, "pipeline": "echo", "file": (io.BytesIO(VIDEO), "clip.mp4")}
    data.update(fields)
    return client.post("/jobs", data=data, content_type="multipart/form-data")


def only_job(app) -> Job:
    with app.app_context():
        from app.db import get_session

        return get_session().scalars(select(Job)).one()


def fetch(client, url: str, **kwargs):
    """GET and close (file responses hold their file open until closed)."""
    response = client.get(url, **kwargs)
    response.get_data()
    response.close()
    return response


def webhook(client, job: Job, payload: dict):
    return client.post(f"/webhooks/{job.id}/{job.webhook_token}", json=payload)


def sent(app, job: Job, runpod_id: str = "rp-1") -> Job:
    """Pretend the submit task sent the job: what its apply of /run's answer records."""
    with app.app_context():
        from app.db import get_session
        from app.lifecycle.status import apply_status
        from app.models import Attempt
        from app.services import services

        session = get_session()
        job = session.get(Job, job.id)
        job.status = Status.SUBMITTING
        session.add(Attempt(job=job, number=1, state=AttemptState.UNKNOWN))
        session.commit()
        apply_status(
            session,
            job,
            {"id": runpod_id, "status": "IN_QUEUE"},
            "submit",
            services(),
        )
        return job


def test_upload_commits_the_job_then_enqueues_submit_and_lands_on_its_page(
    app, client, settings, enqueued
):
    response = upload(client, **{"param.sleep_s": "0.5"})
    assert response.status_code == 303
    job = only_job(app)
    assert response.headers["Location"].endswith(f"/jobs/{job.id}")
    assert enqueued == [("tasks.submit", job.id)]
    assert job.status == Status.PENDING and job.params == {"sleep_s": 0.5}
    assert (Path(settings.storage_dir) / job.input_key).read_bytes() == VIDEO
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "queued: waiting to be sent to the GPU endpoint" in page
    assert "clip.mp4" in page and 'id="cancel"' in page
    listing = client.get("/jobs").get_data(as_text=True)
    assert job.id[:8] in listing
    # Another browser does not see it in its list, nor gets the buttons.
    other = app.test_client()
    assert job.id[:8] not in other.get("/jobs").get_data(as_text=True)
    assert 'id="cancel"' not in other.get(f"/jobs/{job.id}").get_data(as_text=True)


def test_job_page_follows_the_job_in_words(app, client):
    upload(client)
    job = sent(app, only_job(app))
    # No report from the endpoint yet: a cold start is not claimed before one says so.
    waiting = client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)
    assert "queued: waiting for a GPU worker (1 of 1 in the GPU queue)" in waiting
    progress = {"id": "rp-1", "status": "IN_PROGRESS", "output": {"phase": "echo", "percent": 40}}
    assert webhook(client, job, progress).status_code == 200
    panel = client.get(f"/jobs/{job.id}/panel")
    assert "running on a GPU (40%)" in panel.get_data(as_text=True)
    assert panel.headers["X-Job-Terminal"] == "0"
    done = {
        "id": "rp-1",
        "status": "COMPLETED",
        "delayTime": 2500,
        "executionTime": 4000,
        "output": {"echo": {"x": 1}, "inputs": {}},
    }
    assert webhook(client, job, done).json["outcome"] == "applied"
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert ">done<" in page
    assert "2.5 s" in page and "4.0 s" in page
    assert "$0.00076" in page  # 4 s × $0.00019/s, AMPERE_24 flex in the price book
    assert "&#34;echo&#34;" in page or '"echo"' in page
    assert 'id="retry"' not in page and 'id="cancel"' not in page


def test_handler_error_is_shown_on_the_job_page(app, client):
    upload(client)
    job = sent(app, only_job(app))
    error = (
        '{"error_type": "<class \'gpu_worker.pipelines.echo.EchoError\'>", '
        '"error_message": "boom: bad frame", "error_traceback": "Traceback ..."}'
    )
    webhook(client, job, {"id": "rp-1", "status": "FAILED", "error": error})
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "failed" in page
    assert "It said: boom: bad frame." in page
    assert "EchoError" not in page  # the exception's name is for operators
    assert "press Retry" in page.replace("Press", "press") and 'id="retry"' in page
    assert "Traceback" not in page  # details are for operators (admin)


def test_inline_result_is_stored_and_shown_as_a_video(app, client, settings):
    upload(client)
    job = sent(app, only_job(app))
    data = b"fake-mp4-result" * 100
    payload = {
        "id": "rp-1",
        "status": "COMPLETED",
        "executionTime": 1000,
        "output": {
            "pipeline": "echo",
            "output": {
                "url": None,
                "inline_b64": base64.b64encode(data).decode(),
                "content_type": "video/mp4",
                "size": len(data),
            },
            "result": {"frames": 3},
            "metrics": {"inference_s": 0.5},
        },
    }
    webhook(client, job, payload)
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "<video controls" in page and 'id="download"' in page
    link = page.split('id="download"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert fetch(client, link).data == data
    ranged = fetch(client, link, headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.data == data[:4]
    assert ranged.headers["Content-Range"] == f"bytes 0-3/{len(data)}"


def test_webhook_is_idempotent_and_monotonic(app, client):
    upload(client)
    job = sent(app, only_job(app))
    done = {"id": "rp-1", "status": "COMPLETED", "output": {"ok": 1}}
    assert webhook(client, job, done).json["outcome"] == "applied"
    assert webhook(client, job, done).json["outcome"] == "unchanged"
    late = {"id": "rp-1", "status": "IN_PROGRESS", "output": {"percent": 10}}
    assert webhook(client, job, late).json["outcome"] == "stale"
    failed = {"id": "rp-1", "status": "FAILED", "error": "x"}
    assert webhook(client, job, failed).json["outcome"] == "stale"
    assert only_job(app).status == Status.COMPLETED


def test_webhook_for_a_duplicate_execution_is_cancelled_and_ignored(app, client, enqueued):
    upload(client)
    job = sent(app, only_job(app))
    other = {"id": "rp-dup", "status": "COMPLETED", "output": {"evil": 1}}
    assert webhook(client, job, other).json["outcome"] == "duplicate"
    assert ("tasks.cancel_remote", "rp-dup", "default") in enqueued
    job = only_job(app)
    assert job.status == Status.IN_QUEUE and job.result is None


def test_webhook_adopts_the_id_of_a_submit_whose_answer_was_lost(app, client):
    """The submit task died right after POST /run: the attempt is UNKNOWN with no id."""
    upload(client)
    with app.app_context():
        from app.db import get_session
        from app.models import Attempt

        session = get_session()
        job = session.get(Job, only_job(app).id)
        job.status = Status.SUBMITTING
        session.add(Attempt(job=job, number=1, state=AttemptState.UNKNOWN))
        session.commit()
    job = only_job(app)
    done = {"id": "rp-77", "status": "COMPLETED", "output": {"ok": 1}}
    assert webhook(client, job, done).json["outcome"] == "applied"
    with app.app_context():
        from app.db import get_session

        job = get_session().get(Job, job.id)
        assert job.status == Status.COMPLETED and job.runpod_id == "rp-77"
        assert [a.state for a in job.attempts] == [AttemptState.SENT]


def test_cancel_before_submit_is_immediate_and_retry_starts_again(app, client, enqueued):
    upload(client)
    job = only_job(app)
    token = csrf_token(client, f"/jobs/{job.id}")
    assert client.post(f"/jobs/{job.id}/cancel", data={"csrf_token": token}).status_code == 303
    assert only_job(app).status == Status.CANCELLED
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "cancelled by you" in page and 'id="retry"' in page
    assert client.post(f"/jobs/{job.id}/retry", data={"csrf_token": token}).status_code == 303
    assert only_job(app).status == Status.PENDING
    assert enqueued.count(("tasks.submit", job.id)) == 2


def test_cancel_of_a_sent_job_asks_the_task(app, client, enqueued):
    upload(client)
    job = sent(app, only_job(app))
    token = csrf_token(client, f"/jobs/{job.id}")
    client.post(f"/jobs/{job.id}/cancel", data={"csrf_token": token})
    assert ("tasks.cancel", job.id) in enqueued
    assert only_job(app).cancel_requested_at is not None


def test_api_mirrors_the_pages(app, client, enqueued):
    files = {"file": (io.BytesIO(VIDEO), "clip.mp4"), "params": '{"sleep_s": 1}'}
    created = client.post("/api/jobs", data=files, headers=AUTH, content_type="multipart/form-data")
    assert created.status_code == 201, created.json
    body = created.json
    assert body["status"] == "PENDING" and body["params"] == {"sleep_s": 1.0}
    assert body["message"].startswith("queued")
    assert created.headers["Location"] == f"/api/jobs/{body['id']}"
    assert client.get(f"/api/jobs/{body['id']}", headers=AUTH).json["id"] == body["id"]
    listed = client.get("/api/jobs", headers=AUTH).json["jobs"]
    assert [j["id"] for j in listed] == [body["id"]]
    # Another token sees nothing of it.
    other = {"Authorization": "Bearer second-token-abcdefgh"}
    assert client.get("/api/jobs", headers=other).json["jobs"] == []
    assert client.get(f"/api/jobs/{body['id']}", headers=other).status_code == 404
    cancelled = client.post(f"/api/jobs/{body['id']}/cancel", headers=AUTH)
    assert cancelled.status_code == 202 and cancelled.json["status"] == "CANCELLED"
    again = client.post(f"/api/jobs/{body['id']}/cancel", headers=AUTH)
    assert again.status_code == 409
    retried = client.post(f"/api/jobs/{body['id']}/retry", headers=AUTH)
    assert retried.status_code == 202 and retried.json["status"] == "PENDING"


def test_openapi_document_describes_every_route(client):
    doc = client.get("/api/openapi.json").json
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/cancel",
        "/api/jobs/{job_id}/retry",
        "/api/jobs/{job_id}/webhooks",
        "/api/jobs/{job_id}/webhooks/{delivery_id}/redeliver",
        "/api/openapi.json",
    }
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_worker_uploads_its_result_through_the_signed_put_url(app, client, settings):
    upload(client)
    job = only_job(app)
    with app.app_context():
        from app.lifecycle.submission import worker_input
        from app.services import services

        body = worker_input(job, settings, services().storage)
    assert body["job_key"] == job.id and body["pipeline"] == "echo"
    get_url, put_url = body["inputs"]["file"], body["output"]["put_url"]
    assert get_url.startswith(settings.public_base_url + "/files/jobs/")
    path = put_url.removeprefix(settings.public_base_url)
    assert client.put(path, data=b"result-bytes").status_code == 201
    assert fetch(client, get_url.removeprefix(settings.public_base_url)).data == VIDEO
    # The GET link cannot write, the PUT link cannot write the input.
    input_path = get_url.removeprefix(settings.public_base_url)
    assert client.put(input_path, data=b"overwrite").status_code == 403
    assert fetch(client, get_url.removeprefix(settings.public_base_url)).data == VIDEO


def test_admin_login_dashboard_and_actions(app, client, enqueued):
    upload(client)
    assert client.get("/admin/").status_code == 302
    login_admin(client)
    page = client.get("/admin/").get_data(as_text=True)
    assert "Admin dashboard" in page and "No health report yet" in page
    token = csrf_token(client, "/admin/")
    # Purge asks first (how many jobs it cancels); only the confirmation's button purges.
    assert client.post("/admin/purge", data={"csrf_token": token}).status_code == 303
    assert ("tasks.purge_queue", "default") not in enqueued
    confirm = {"csrf_token": token, "confirm": "yes"}
    assert client.post("/admin/purge", data=confirm).status_code == 303
    assert ("tasks.purge_queue", "default") in enqueued
    job = only_job(app)
    client.post(f"/admin/jobs/{job.id}/cancel", data={"csrf_token": token})
    assert only_job(app).status == Status.CANCELLED
    # The admin sees every job in the list.
    assert job.id[:8] in client.get("/jobs").get_data(as_text=True)


def test_admin_dashboard_shows_endpoint_unreachable(app, client, settings):
    with app.app_context():
        from app.db import get_session
        from app.endpoints.health import refresh_snapshot
        from deploy.runpod.jobapi import JobAPI

        class NotFoundSession:
            def mount(self, *args):
                pass

            def request(self, *args, **kwargs):
                import requests

                response = requests.Response()
                response.status_code = 404
                response._content = b'{"message": "Not Found"}'
                return response

        api = JobAPI("ep-gone", "key-1234567", "http://127.0.0.1:9/v2", session=NotFoundSession())
        refresh_snapshot(get_session(), settings, api, queued=0)
    login_admin(client)
    page = client.get("/admin/").get_data(as_text=True)
    assert "endpoint unreachable" in page and "balance" in page


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_not_found_answers_in_the_asked_format(client, accept):
    response = client.get("/jobs/nope", headers={"Accept": accept})
    assert response.status_code == 404
    assert ("application/json" in response.content_type) == (accept == "application/json")


def test_late_webhook_of_a_superseded_attempt_is_not_adopted(app, client, enqueued):
    """After a retry, the old RunPod job's webhook must not become the new attempt's result."""
    upload(client)
    job = sent(app, only_job(app), runpod_id="rp-old")
    webhook(client, job, {"id": "rp-old", "status": "FAILED", "error": "oom"})
    token = csrf_token(client, f"/jobs/{job.id}")
    client.post(f"/jobs/{job.id}/retry", data={"csrf_token": token})
    with app.app_context():
        from app.db import get_session
        from app.models import Attempt

        session = get_session()
        fresh = session.get(Job, job.id)
        fresh.status = Status.SUBMITTING
        session.add(Attempt(job=fresh, number=2, state=AttemptState.UNKNOWN))
        session.commit()
    late = {"id": "rp-old", "status": "COMPLETED", "output": {"stale": 1}}
    assert webhook(client, job, late).json["outcome"] == "duplicate"
    job = only_job(app)
    assert job.status == Status.SUBMITTING and job.runpod_id is None


def test_form_sends_every_pipelines_fields_and_only_the_chosen_ones_count(app, client, tmp_path):
    """The browser submits each pipeline's (mostly empty) parameter fields."""
    from tests.gpu_worker.media import make_clip

    clip = make_clip(tmp_path / "clip.mp4", frames=2).read_bytes()
    page = client.get("/").get_data(as_text=True)
    assert 'name="param.echo.sleep_s"' in page and 'name="param.video_enhance.scale"' in page
    fields = {
        "pipeline": "video_enhance",
        "param.echo.sleep_s": "",
        "param.echo.fail": "",
        "param.video_enhance.scale": "2",
        "param.video_enhance.crf": "",
        "file": (io.BytesIO(clip), "clip.mp4"),
    }
    assert upload(client, **fields).status_code == 303
    job = only_job(app)
    assert job.pipeline == "video_enhance" and job.params == {"scale": 2}
    assert job.output_content_type == "video/mp4"


def test_cancel_while_the_submit_is_under_way_waits_for_the_endpoint_id(app, client):
    """Cancelling only locally could leave the job running at the endpoint."""
    from app.lifecycle.reconcile import cancel
    from app.lifecycle.submission import RetryLater

    upload(client)
    with app.app_context():
        from app.db import get_session
        from app.services import services

        session = get_session()
        job = session.get(Job, only_job(app).id)
        job.status = Status.SUBMITTING
        session.commit()
        with pytest.raises(RetryLater):
            cancel(session, job.id, services())
        assert session.get(Job, job.id).status == Status.SUBMITTING
