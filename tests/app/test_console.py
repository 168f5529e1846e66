"""The operator console: a self-refreshing dashboard, workers with their log lines, failed
jobs' worker logs, and the jobs list with filters."""

from __future__ import annotations

import json
import time

from app.models import Job, Snapshot, Status, utcnow
from deploy.runpod.vocabulary import WorkerRow
from tests.app.conftest import login_admin
from tests.app.test_pages_and_api import only_job, sent, upload, webhook


def workers_report() -> dict:
    """Two workers, their ages counted from now (a module constant would age with the run)."""
    return {
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
        data = {
            "health": {"workers": {"running": 1}, "jobs": {}},
            "workers": workers_report(),
            **extra,
        }
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
    workers = panel.split('id="workers"')[1].split("</table></div>")[0]
    assert "wabc123" in workers and "running" in workers and "5 min" in workers
    assert f"/jobs/{job.id}" in workers  # the worker's current RunPod job, as the app's job
    assert "frame 12 of 40" in workers
    # The exited worker is folded away under a count, with its exit code and log.
    assert "wdead99" not in workers
    exited = panel.split('id="exited"')[1].split("</details></td>")[0]
    assert "1 exited worker</summary>" in exited
    assert "wdead99" in exited and "exit 137" in exited and "Killed" in exited
    assert "effective cap" not in panel and "Status checks:" in panel
    # A fresh snapshot: nothing asked of the endpoint.
    assert ("tasks.refresh_endpoint",) not in enqueued


def test_the_dashboard_parses_each_stored_worker_row_once(app, client, monkeypatch):
    """The stored rows become ``WorkerRow``s once per view; the counts by state come from
    the report's summary, not from parsing the rows again."""
    snapshot(app)
    login_admin(client)
    parsed = []
    parse = WorkerRow.from_report.__func__

    def counted(cls, row):
        parsed.append(row.get("id"))
        return parse(cls, row)

    monkeypatch.setattr(WorkerRow, "from_report", classmethod(counted))
    panel = client.get("/admin/panel").get_data(as_text=True)
    assert "wabc123" in panel and "running 1" in panel
    assert sorted(parsed) == ["wabc123", "wdead99"]


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
    report = workers_report()
    idle = {**report, "workers": [{**report["workers"][0], "state": "idle", "currentJobs": []}]}
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

        runpod.endpoints["ep-live"] = {
            "id": "ep-live",
            "name": "gpu",
            "image": "acme/w:1",
            "gpu": {
                "pools": ["ADA_24"],
                "count": 1,
                "allowedCudaVersions": [],
                "minCudaVersion": None,
            },
            "workers": {"min": 0, "max": 2, "idleTimeout": 10},
            "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
            "dataCenterIds": [],
            "networkVolumes": [],
            "timeout": 300000,
            "flashboot": "OFF",
            "createdAt": "2026-12-05T20:00:00Z",
        }
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
    # The endpoint's scaling settings, read from REST v2 as they are set on RunPod.
    settings_words = panel.split('id="settings"')[1].split("</dl>")[0]
    assert "Workers max</dt><dd>2" in settings_words and "ADA_24" in settings_words


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


SDK_LINES = [
    "2026-12-05 20:40:19,415 INFO gpu_worker: worker settings: {'device': 'auto'}",
    "--- Starting Serverless Worker |  Version 1.12.0 ---",
    '{"requestId": null, "message": "Jobs in queue: 1", "level": "INFO"}',
    '{"requestId": "rp-1", "message": "' + "x" * 150 + ' end of a long line", "level": "ERROR"}',
]


def test_worker_log_lines_show_time_level_and_message_whole(app, client):
    workers = {
        "workers": [
            {"id": "wlog1", "state": "idle", "startedAt": time.time(), "logTail": SDK_LINES}
        ]
    }
    snapshot(app, workers=workers)
    login_admin(client)
    panel = client.get("/admin/panel").get_data(as_text=True)
    log = panel.split('class="log-lines"')[1].split("</table>")[0]
    assert '<td class="log-time">2026-12-05 20:40:19,415</td><td class="log-level">INFO</td>' in log
    assert '<td class="log-message">gpu_worker: worker settings:' in log
    assert '<td class="log-level">INFO</td><td class="log-message">Jobs in queue: 1</td>' in log
    assert "requestId" not in log  # the SDK's JSON is read, not shown raw
    assert "--- Starting Serverless Worker |  Version 1.12.0 ---" in log  # plain: kept whole
    assert '<tr class="bad">' in log  # the ERROR line stands out
    # The folded summary is the last line whole (the browser ellipsises it), never cut.
    assert ("x" * 150 + " end of a long line</span></summary>") in panel


def test_a_failed_jobs_operator_view_names_the_exception_not_only_the_last_frames(app, client):
    upload(client)
    job = sent(app, only_job(app))
    webhook(
        client,
        job,
        {"id": "rp-1", "status": "FAILED", "workerId": "wabc123", "error": "handler crashed"},
    )
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/app/gpu_worker/pipelines/video_enhance.py", line 12, in load\n'
        "    import cv2\n"
        "ModuleNotFoundError: No module named 'cv2'"
    )
    line = json.dumps({"requestId": "rp-1", "message": traceback, "level": "ERROR"})
    logs = {job.id: {"worker_id": "wabc123", "lines": ["loading", line]}}
    snapshot(app, job_logs=logs)
    login_admin(client)
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    details = page.split('id="operator-details"')[1].split("</details>")[0]
    exception = details.split('id="exception"')[1].split("</p>")[0]
    assert "ModuleNotFoundError: No module named &#39;cv2&#39;" in exception
    log = details.split('id="worker-log"')[1].split("</pre>")[0]
    assert "ERROR Traceback (most recent call last):" in log and "requestId" not in log


def test_purge_asks_first_saying_how_many_jobs_it_cancels(app, client, enqueued):
    for _ in range(2):
        upload(client)
    with app.app_context():
        from app.db import get_session

        session = get_session()
        for n, job in enumerate(session.query(Job).all()):
            job.status, job.runpod_id = Status.IN_QUEUE, f"rp-{n}"
        session.commit()
    login_admin(client)
    panel = client.get("/admin/panel").get_data(as_text=True)
    assert 'action="/admin/purge"' in panel and 'method="get"' in panel.split('id="purge"')[0]
    confirm = client.get("/admin/purge?endpoint=default")
    assert confirm.status_code == 200
    text = confirm.get_data(as_text=True)
    assert "This cancels <strong>2 jobs</strong>" in text
    assert "Cancel 2 jobs: purge the queue" in text
    # A POST that did not come from the confirmation step asks first and purges nothing.
    csrf = text.split('name="csrf_token" value="')[1].split('"')[0]
    asked = client.post("/admin/purge", data={"csrf_token": csrf, "endpoint": "default"})
    assert asked.status_code == 303 and "/admin/purge?endpoint=default" in asked.location
    assert not [e for e in enqueued if e[0] == "tasks.purge_queue"]
    done = client.post(
        "/admin/purge", data={"csrf_token": csrf, "endpoint": "default", "confirm": "yes"}
    )
    assert done.status_code == 303
    assert ("tasks.purge_queue", "default") in enqueued
    assert client.get("/admin/purge?endpoint=nope").status_code == 400


def test_the_dashboard_shows_the_endpoints_settings_and_charts_of_the_last_day(app, client):
    workers = {
        **workers_report(),
        "endpoint": {
            "workers": {"min": 0, "max": 3, "idleTimeout": 5},
            "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
            "gpu": {"pools": ["ADA_24", "AMPERE_16"], "count": 1},
            "timeout": 600000,
        },
    }
    snapshot(app, workers=workers)
    now = utcnow()
    with app.app_context():
        from app.db import get_session

        session = get_session()
        for status, delay, run in [
            (Status.COMPLETED, 2000, 10000),
            (Status.COMPLETED, 4000, 30000),
            (Status.FAILED, 1000, None),
        ]:
            session.add(
                Job(
                    pipeline="echo",
                    status=status,
                    finished_at=now,
                    delay_ms=delay,
                    execution_ms=run,
                )
            )
        session.commit()
    login_admin(client)
    panel = client.get("/admin/panel").get_data(as_text=True)
    settings = panel.split('id="settings"')[1].split("</dl>")[0]
    for words in ("Workers max</dt><dd>3", "Idle timeout</dt><dd>5 s", "QUEUE_DELAY (4 s of"):
        assert words in settings, settings
    assert "ADA_24, AMPERE_16" in settings
    page = client.get("/admin/").get_data(as_text=True)
    charts = page.split('id="charts"')[1].split("</section>")[0]
    assert charts.count('role="img"') == 3
    assert "3 jobs ended in the last 24 hours" in charts
    hour = now.strftime("%H:00")
    jobs = charts.split('id="chart-jobs"')[1].split("</figure>")[0]
    assert f'<th scope="row">{hour}</th><td>2</td><td>1</td><td>0</td>' in jobs
    run = charts.split('id="chart-run"')[1].split("</figure>")[0]
    assert f'<th scope="row">{hour}</th><td>20 s</td><td>29 s</td>' in run  # p50, p95
