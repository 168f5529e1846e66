"""A worker image missing a module, seen by an operator in Chromium: the failed job's page
names the exception the traceback ends with, not only its last frames."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.e2e.browsing import screenshots
from tests.e2e.test_browser import CHROMIUM_ARGS, browser  # noqa: F401
from tests.e2e.test_task_health import login
from tests.tasks.conftest import Stack, stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
# The worker dies importing a module its image lacks, before it takes any job.
MISSING_MODULE = f"{sys.executable} -c 'import cv2'"


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Iterator[Stack]:
    with stack(
        tmp_path_factory.mktemp("broken"),
        endpoint_options={
            "worker_command": MISSING_MODULE,
            "crash_loop_threshold": 2,
            "fail_fast_crash_loop": True,
        },
        extra_env={"PIPELINES": "echo"},
    ) as running:
        yield running


def test_the_failed_jobs_operator_view_names_the_exception(browser, broken):  # noqa: F811
    job_id = broken.upload("clip.mp4")
    broken.wait_job(job_id, "FAILED", timeout=90)
    context = browser.new_context(base_url=broken.web.url(""))
    page = login(context)
    page.goto(f"/jobs/{job_id}")
    exception = page.locator("#operator-details #exception").inner_text()
    assert exception == "Exception: ModuleNotFoundError: No module named 'cv2'", exception
    screenshots(page, "failed-job-operator")
    context.close()
