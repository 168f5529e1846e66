"""A paused Celery worker, seen in Chromium: the dashboard shows no task worker and the job
waiting, the job page says no task worker has taken it; both recover when it resumes."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator

import pytest

from deploy.stack.services import whole_stack
from tests.e2e.test_browser import CHROMIUM_ARGS, browser, make_video  # noqa: F401
from tests.e2e.test_live_pages import ADMIN_PASSWORD, shoot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
GRACE_S = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator:
    with whole_stack(
        tmp_path_factory.mktemp("taskhealth"),
        endpoint_options={"workers_max": 1, "idle_timeout": 60},
        # Beat's first tick comes one reconcile interval after it starts.
        extra_env={
            "TASK_PICKUP_GRACE_S": str(GRACE_S),
            "RECONCILE_INTERVAL_S": "5",
            "PIPELINES": "echo",
        },
        beat=True,
    ) as running:
        yield running


def pause(worker, sig: signal.Signals) -> None:
    """SIGSTOP/SIGCONT the worker's whole process group: main process and pool children."""
    os.killpg(os.getpgid(worker.process.pid), sig)


def test_a_paused_task_worker_is_named_on_the_dashboard_and_the_job_page(
    browser,  # noqa: F811 - the fixture imported above
    stack,
    tmp_path,
):
    clip = make_video(tmp_path / "clip.mp4", frames=8)
    context = browser.new_context(base_url=stack.web.url(""))
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto("/admin/")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.locator("form [type=submit]").click()
    page.wait_for_url(re.compile(r"/admin/$"))
    celery = page.locator("#celery")
    # Running: the worker is seen, the queue is empty, beat has ticked.
    page.wait_for_function(
        "!document.getElementById('celery-workers').innerText.includes('none')", timeout=30_000
    )
    assert re.search(r"Workers seen: 1 \(worker-", celery.inner_text()), celery.inner_text()
    assert "celery 0" in page.locator("#celery-queues").inner_text()
    page.wait_for_function(
        "document.getElementById('celery-beat').innerText.includes('last sent a task')",
        timeout=30_000,
    )

    pause(stack.worker, signal.SIGSTOP)
    try:
        page.goto("/")
        page.select_option("#pipeline", "echo")
        page.set_input_files("input[type=file]", str(clip))
        page.locator("#upload-form [type=submit]").click()
        page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
        job_id = page.url.rsplit("/", 1)[1]
        status = page.locator("#status")
        # Within the grace it reads as any queued job; past it, the page says why it waits.
        page.wait_for_function(
            "document.getElementById('status').innerText.includes('no task worker')",
            timeout=60_000,
        )
        text = status.inner_text()
        assert "queued: no task worker has picked this job up for" in text, text
        assert "operators see this on their dashboard" in text, text
        shoot(page, "job-no-task-worker")

        page.goto("/admin/")
        # Three missed heartbeats: the dashboard says no worker, and names the waiting job.
        page.wait_for_function(
            "document.getElementById('celery-workers').innerText.includes('none')",
            timeout=60_000,
        )
        assert "silent for" in page.locator("#celery-workers").inner_text()
        # The submit task, and reconcile's re-sends of the waiting job, pile up unread.
        queues = page.locator("#celery-queues").inner_text()
        assert re.search(r"celery [1-9]", queues), queues
        unpicked = page.locator("#unpicked").inner_text()
        assert "1 job waited more than 3 s for a task worker" in unpicked, unpicked
        assert "no task worker is answering" in unpicked, unpicked
        shoot(page, "dashboard-no-task-worker")
    finally:
        pause(stack.worker, signal.SIGCONT)

    # Resumed: the job is taken and runs to the end; the page's words move on.
    page.goto(f"/jobs/{job_id}")
    page.wait_for_function(
        "!document.getElementById('status').innerText.includes('no task worker')",
        timeout=60_000,
    )
    page.goto("/admin/")
    page.wait_for_function(
        "!document.getElementById('celery-workers').innerText.includes('none')", timeout=30_000
    )
    assert page.locator("#unpicked").count() == 0
    context.close()
