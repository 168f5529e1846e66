"""When jobs cannot run, the job and admin pages say why in words a person can act on."""

from __future__ import annotations

import re
import sys

import pytest

from tests.tasks.conftest import stack

pytestmark = pytest.mark.timeout(180)


def login_admin(s) -> None:
    page = s.browser.get(s.web.url("/admin/login"), timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = s.browser.post(
        s.web.url("/admin/login"),
        data={"csrf_token": token, "password": s.env["ADMIN_PASSWORD"], "next": "/admin/"},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 303


def test_endpoint_answering_not_found_shows_endpoint_unreachable(tmp_path):
    extra = {"ENDPOINT_UNREACHABLE_GRACE_S": "4"}
    with stack(tmp_path, endpoint_options={"disabled": True}, extra_env=extra) as s:
        job_id = s.upload()
        s.worker.process.wait_until(
            lambda: s.job(job_id).diagnosis is not None, "the job's diagnosis", 60
        )
        job = s.job(job_id)
        assert job.status == "PENDING", "not a terminal failure before the grace period"
        page = s.page(job_id)
        assert "endpoint unreachable" in page
        assert "balance" in page and "RUNPOD_ENDPOINT_ID" in page
        s.reconcile()
        login_admin(s)
        admin = s.browser.get(s.web.url("/admin/"), timeout=30).text
        assert "endpoint unreachable" in admin
        job = s.wait_job(job_id, timeout=60, sweep=True)
        assert job.status == "FAILED" and "endpoint unreachable" in job.error


CRASHING_WORKER = (
    f'{sys.executable} -c "import sys; '
    "print('python: can\\'t open file /handler.py: [Errno 2] No such file or directory'); "
    'sys.exit(2)"'
)


def test_crash_looping_workers_are_diagnosed_on_the_job_page(tmp_path):
    """As on RunPod, the job stays IN_QUEUE while workers die; the page says why."""
    options = {"worker_command": CRASHING_WORKER, "crash_loop_threshold": 1000}
    with stack(tmp_path, endpoint_options=options) as s:
        job_id = s.upload()
        s.wait_job(job_id, "IN_QUEUE", timeout=60)
        # /workers lists every crashed worker; its summary counts current ones only.
        s.endpoint.wait_for(
            lambda: sum(w["state"] == "unhealthy" for w in s.endpoint.workers()["workers"]) >= 2,
            60,
            what="two crashes",
        )
        s.worker.process.wait_until(
            lambda: s.reconcile() is not None and s.job(job_id).diagnosis, "a diagnosis", 60
        )
        page = s.page(job_id)
        assert "crash looping" in page
        assert "exit code 2 means a file was not found" in page
        assert "No such file or directory" in page
        assert s.job(job_id).status == "IN_QUEUE"


def test_endpoint_that_fails_jobs_for_a_crash_loop_shows_why(tmp_path):
    """The local endpoint fails queued jobs once it declares a crash loop: that reason shows."""
    options = {
        "worker_command": CRASHING_WORKER,
        "crash_loop_threshold": 2,
        "fail_fast_crash_loop": True,
    }
    with stack(tmp_path, endpoint_options=options) as s:
        job_id = s.upload()
        job = s.wait_job(job_id, timeout=60)
        assert job.status == "FAILED"
        page = s.page(job_id)
        # The submitter is told the workers could not start and Retry cannot help; the
        # endpoint's crash-loop report (exit code, log lines) is for operators only.
        assert "could not start, so the job never ran" in page
        assert "Retrying will not help" in page
        assert "crash-looping" not in page and "last exit code" not in page
