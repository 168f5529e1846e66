"""The operator console in Chromium on a real stack: a paused Celery worker (the dashboard
shows no task worker and the job waiting, the job page says no task worker has taken it;
both recover when it resumes), then worker log lines, exited workers, the endpoint's
settings, the charts, and a purge that asks first, with JavaScript off."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator

import pytest

from tests.e2e.browsing import screenshots
from tests.e2e.test_browser import CHROMIUM_ARGS, browser, make_video  # noqa: F401
from tests.e2e.test_live_pages import ADMIN_PASSWORD
from tests.tasks.conftest import Stack
from tests.tasks.conftest import stack as running_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
GRACE_S = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("taskhealth"),
        endpoint_options={"workers_max": 1, "idle_timeout": 2, "stop_grace": 1},
        # Beat ticks every RECONCILE_INTERVAL_S (2 s here).
        extra_env={"TASK_PICKUP_GRACE_S": str(GRACE_S), "PIPELINES": "echo"},
        beat=True,
    ) as running:
        yield running


def login(context):
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto("/admin/")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.locator("form [type=submit]").click()
    page.wait_for_url(re.compile(r"/admin/$"))
    return page


def reload_until(page, selector: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while page.locator(selector).count() == 0:
        assert time.monotonic() < deadline, f"no {selector}: {page.content()[-2000:]}"
        page.wait_for_timeout(1000)
        page.reload()


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
    page = login(context)
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
        screenshots(page, "job-no-task-worker")

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
        screenshots(page, "dashboard-no-task-worker")
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


def test_the_console_without_javascript_logs_settings_charts_and_a_purge_that_asks(
    browser,  # noqa: F811 - the fixture imported above
    stack,
    tmp_path,
):
    clip = make_video(tmp_path / "clip.mp4", frames=8)
    # The only GPU worker runs a long job, so the next one waits in the endpoint's queue.
    running = stack.upload("a.mp4", clip.read_bytes(), sleep_s=20)
    stack.wait_job(running, "IN_PROGRESS", timeout=90)
    waiting = stack.upload("b.mp4", clip.read_bytes())
    stack.wait_job(waiting, "IN_QUEUE", timeout=60)

    context = browser.new_context(base_url=stack.web.url(""), java_script_enabled=False)
    page = login(context)
    # Without script the page does not refresh itself: reload until the endpoint snapshot
    # the dashboard asked for on load shows the busy worker.
    reload_until(page, "#workers tr.worker table.log-lines")
    # The settings the local endpoint runs with, as RunPod's REST v2 names them.
    settings = page.locator("#settings").inner_text()
    assert "Workers max" in settings and "Idle timeout" in settings and "2 s" in settings
    assert "QUEUE_DELAY" in settings, settings
    # Log lines as time, level, message; the SDK's JSON is not shown raw.
    lines = page.locator("#workers tr.worker table.log-lines")
    assert lines.count() >= 1
    log = lines.first.text_content()  # folded in <details>: in the page, not yet shown
    assert "Jobs in queue" in log or "Started." in log, log
    assert "requestId" not in log
    # The charts: three images with names, and their numbers as tables.
    charts = page.locator("#charts svg[role=img]")
    assert charts.count() == 3
    assert "Jobs per hour by outcome" in page.locator("#chart-jobs svg > title").text_content()
    screenshots(page, "console-dashboard")

    page.locator("#purge").click()  # a plain GET form: no script needed
    page.wait_for_url(re.compile(r"/admin/purge\?endpoint="))
    count = page.locator("#purge-count").inner_text()
    assert "This cancels 1 job of this app waiting in the queue" in count, count
    assert waiting[:8] in page.locator("#purge-jobs").inner_text()
    screenshots(page, "console-purge-confirm")
    page.locator("#purge-confirm").click()
    page.wait_for_url(re.compile(r"/admin/$"))
    stack.wait_job(waiting, "CANCELLED", timeout=60)
    assert stack.job(running).status in ("IN_PROGRESS", "COMPLETED")  # not touched

    # Once idle past its timeout the worker exits: folded under a count, not in the table.
    stack.wait_job(running, "COMPLETED", timeout=90)
    reload_until(page, "details.exited-workers")
    summary = page.locator("details.exited-workers > summary").inner_text()
    assert re.match(r"\d+ exited workers?$", summary), summary
    assert "out of memory" not in page.locator("details.exited-workers").text_content()
    context.close()
