"""The operator console: a self-refreshing dashboard, workers with their log lines, failed
jobs' worker logs, and the jobs list with filters."""

from __future__ import annotations

import time

from app.models import Job, Snapshot, Status, utcnow
from tests.app.conftest import login_admin
from tests.app.test_pages_and_api import only_job, sent, upload, webhook

WORKERS = {
    "workers": [
        {
            "id": "wabc123",
            "state": "running",
            "startedAt": time.time() - 300,
            "currentJobs": ["rp-1"],
            "logTail": ["booting", "loaded model", "frame 12 of 40"],
        },
        {
            "id": "wdead99",
            "state": "exited",
            "startedAt": time.time() - 900,
            "exitedAt": time.time() - 600,
            "exitCode": 137,
            "exitMeaning": "the worker was killed for lack of memory",
            "logTail": ["Killed"],
        },
    ],
    "summary": {"running": 1, "idle": 0},
}


def snapshot(app, **extra) -> None:
    with app.app_context():
        from app.db import get_session

        session = get_session()
        data = {"health": {"workers": {"running": 1}, "jobs": {}}, "workers": WORKERS, **extra}
        session.merge(Snapshot(name="endpoint", data=data, updated_at=utcnow()))
        session.commit()


def test_the_dashboard_refreshes_itself_and_lists_workers_with_their_log_lines(
    app, client, enqueued
):
    upload(client)
    job = sent(app, only_job(app))
    snapshot(app)
    login_admin(client)
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="admin-panel"' in page and "admin.js" in page
    assert "updates itself every 3 s" in page
    panel = client.get("/admin/panel").get_data(as_text=True)
    workers = panel.split('id="workers"')[1].split("</table>")[0]
    assert "wabc123" in workers and "running" in workers and "5 min" in workers
    assert f"/jobs/{job.id}" in workers  # the worker's current RunPod job, as the app's job
    assert "frame 12 of 40" in workers
    assert "exit 137" in workers and "Killed" in workers
    assert "effective cap" not in panel and "Status checks:" in panel
    # A fresh snapshot: nothing asked of the endpoint.
    assert ("tasks.refresh_endpoint",) not in enqueued


def test_a_stale_snapshot_is_refreshed_once_while_the_console_is_open(app, client, enqueued):
    login_admin(client)
    client.get("/admin/panel")
    client.get("/admin/panel")
    assert enqueued.count(("tasks.refresh_endpoint",)) == 1
    assert "No worker report yet" in client.get("/admin/panel").get_data(as_text=True)


def test_the_dashboard_needs_an_admin(client):
    assert client.get("/admin/panel").status_code == 302


def test_a_failed_job_shows_operators_its_worker_and_log_tail(app, client):
    upload(client)
    job = sent(app, only_job(app))
    error = (
        '{"error_type": "RuntimeError", "error_message": "boom", '
        '"error_traceback": "Traceback (most recent call last):\\n  File x\\nRuntimeError: boom"}'
    )
    webhook(client, job, {"id": "rp-1", "status": "FAILED", "workerId": "wabc123", "error": error})
    logs = {job.id: {"worker_id": "wabc123", "lines": ["loading", "RuntimeError: boom"]}}
    snapshot(app, job_logs=logs)
    assert "Details for operators" not in client.get(f"/jobs/{job.id}").get_data(as_text=True)
    login_admin(client)
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    details = page.split('id="operator-details"')[1].split("</details>")[0]
    assert "wabc123" in details and "rp-1" in details
    assert "Traceback (most recent call last)" in details
    assert "RuntimeError: boom" in details.split('id="worker-log"')[1]


def test_operator_details_do_not_repeat_the_one_line_error(app, client, enqueued):
    upload(client)
    job = sent(app, only_job(app))
    webhook(client, job, {"id": "rp-1", "status": "FAILED", "workerId": "wxyz", "error": "oops"})
    login_admin(client)
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    details = page.split('id="operator-details"')[1].split("</details>")[0]
    assert "oops" not in details and 'id="error-detail"' not in details
    assert "python -m deploy logs --worker wxyz" in details
    assert ("tasks.refresh_endpoint",) in enqueued  # fetches the log tail for the next look


def test_the_jobs_list_filters_and_shows_duration_cost_and_owner(app, client):
    with app.app_context():
        from app.db import get_session

        session = get_session()
        session.add_all(
            [
                Job(pipeline="echo", status=Status.COMPLETED, execution_ms=4200, cost_usd=0.0013),
                Job(pipeline="video_enhance", status=Status.FAILED, owner="api:0123456789abcdef"),
            ]
        )
        session.commit()
    login_admin(client)
    listing = client.get("/jobs").get_data(as_text=True)
    assert "4.2 s" in listing and "$0.00130" in listing
    assert "web form" in listing and "API token 01234567" in listing
    failed = client.get("/jobs?status=failed").get_data(as_text=True)
    assert "video_enhance" in failed.split('id="jobs"')[1] and "4.2 s" not in failed
    echo = client.get("/jobs?pipeline=echo").get_data(as_text=True)
    assert "4.2 s" in echo and "API token" not in echo.split('id="jobs"')[1]
    assert "No jobs match" in client.get("/jobs?status=CANCELLED").get_data(as_text=True)
    assert client.get("/jobs?status=bogus").status_code == 400
    assert client.get("/jobs?pipeline=nope").status_code == 400


def test_a_worker_reporting_a_job_shows_as_running_it_before_the_next_snapshot(app, client):
    from tests.app.test_live_status import progress_path

    upload(client)
    job = sent(app, only_job(app))
    idle = {**WORKERS, "workers": [{**WORKERS["workers"][0], "state": "idle", "currentJobs": []}]}
    with app.app_context():
        from app.db import get_session

        session = get_session()
        data = {"health": {"workers": {"idle": 1}, "jobs": {}}, "workers": idle}
        session.merge(Snapshot(name="endpoint", data=data, updated_at=utcnow()))
        session.commit()
    client.post(progress_path(app, job), json={"progress": {"percent": 8}, "worker_id": "wabc123"})
    login_admin(client)
    workers = client.get("/admin/panel").get_data(as_text=True).split('id="workers"')[1]
    row = workers.split("</tr>")[1]
    assert "running" in row and f"/jobs/{job.id}" in row


def test_on_runpod_the_dashboard_reads_workers_logs_and_balance_from_the_management_api(
    app, client, settings
):
    """The RunPod path of the snapshot (REST v2 workers and worker logs, GraphQL balance),
    against the stand-in built from RunPod's published spec."""
    from app.endpoints.diagnosis import UNHEALTHY
    from app.endpoints.health import refresh_snapshot
    from deploy.runpod.jobapi import JobAPI
    from tests.deploy.ops.runpod_standin import RunPodStandIn

    with RunPodStandIn() as runpod, app.app_context():
        from app.db import get_session

        runpod.endpoints["ep-live"] = {"id": "ep-live", "name": "gpu", "image": "acme/w:1"}
        runpod.versions["ep-live"], runpod.releases["ep-live"] = 1, []
        counts = {"completed": 0, "failed": 0, "inProgress": 0, "inQueue": 1, "retried": 0}
        runpod.job_counts["ep-live"] = counts  # our job waits there too
        runpod.add_worker("ep-live", "UNHEALTHY", ["loading model", "CUDA error: no device"])
        on_runpod = settings.replace(
            runpod_api_key=runpod.api_key,
            runpod_endpoint_id="ep-live",
            runpod_endpoint_base_url=runpod.rest_url,
            runpod_rest_url=runpod.rest_url,
            runpod_graphql_url=runpod.graphql_url,
        )
        api = JobAPI("ep-live", runpod.api_key, runpod.rest_url)
        data = refresh_snapshot(get_session(), on_runpod, api, queued=1)
        assert runpod.violations == []
    (worker,) = data["workers"]["workers"]
    assert worker["state"] == "unhealthy"
    assert worker["logTail"] == ["loading model", "CUDA error: no device"]
    assert data["diagnosis"] == UNHEALTHY
    assert data["balance"]["clientBalance"] == 42.5
    login_admin(client)
    panel = client.get("/admin/panel").get_data(as_text=True)
    assert "CUDA error: no device" in panel and "RunPod balance: $42.5" in panel
    assert "crashed on start" in panel


def test_an_empty_dashboard_says_there_are_no_jobs_yet(client):
    login_admin(client)
    recent = client.get("/admin/panel").get_data(as_text=True).split('id="recent"')[1]
    assert "No jobs yet." in recent.split("</table>")[0]


def test_the_dashboard_shows_task_workers_queues_and_beat_from_redis(app, client):
    from app import taskhealth

    with app.app_context():
        from app.services import services

        redis = services().redis
        now = time.time()
        redis.hset(taskhealth.WORKERS_KEY, "celery@alive", now - 2)
        redis.hset(taskhealth.WORKERS_KEY, "celery@gone", now - 600)
        redis.set(taskhealth.BEAT_KEY, now - 12)
        redis.rpush("celery", "m1", "m2")
    login_admin(client)
    panel = client.get("/admin/panel").get_data(as_text=True)
    section = panel.split('id="celery"')[1].split("</section>")[0]
    assert "Workers seen: 1 (celery@alive)" in section, section
    assert "celery@gone silent for 10 min" in section
    assert "celery 2" in section
    assert "last sent a task 12 s ago" in section
