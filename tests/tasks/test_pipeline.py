"""Upload → GPU job → result, on real parts, and the failures a user sees on the job page."""

from __future__ import annotations

import pytest

from tests.tasks.conftest import VIDEO

pytestmark = pytest.mark.timeout(180)


def test_uploaded_file_comes_back_processed(shared_stack):
    before = shared_stack.endpoint_requests().get("run", 0)
    job_id = shared_stack.upload(return_input="file")
    job = shared_stack.wait_job(job_id)
    assert job.status == "COMPLETED", job.error
    assert job.output_size == len(VIDEO)
    assert job.delay_ms is not None and job.execution_ms is not None
    page = shared_stack.page(job_id)
    assert ">done<" in page and "<video controls" in page
    link = page.split('id="download"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert shared_stack.browser.get(shared_stack.web.url(link), timeout=30).content == VIDEO
    assert shared_stack.endpoint_requests()["run"] == before + 1
    assert [a.state for a in job.attempts] == ["SENT"]


def test_handler_error_is_shown_on_the_job_page(shared_stack):
    job_id = shared_stack.upload(fail="the model rejected frame 7")
    job = shared_stack.wait_job(job_id)
    assert job.status == "FAILED"
    page = shared_stack.page(job_id)
    assert "EchoError: the model rejected frame 7" in page
    assert "Retry" in page


def test_purge_turns_queued_jobs_cancelled(shared_stack):
    from click.testing import CliRunner  # noqa: F401 - the flask runner below uses click

    blocker = shared_stack.upload(sleep_s=30)
    shared_stack.wait_job(blocker, "IN_PROGRESS", timeout=60)
    queued = [shared_stack.upload() for _ in range(2)]
    for job_id in queued:
        shared_stack.wait_job(job_id, "IN_QUEUE", timeout=30)
    runner = shared_stack.app.test_cli_runner()
    result = runner.invoke(args=["admin", "purge"])
    assert result.exit_code == 0, result.output
    assert "removed 2 queued job(s)" in result.output
    for job_id in queued:
        job = shared_stack.wait_job(job_id, timeout=30)
        assert job.status == "CANCELLED"
        assert "purged" in shared_stack.page(job_id)
    cancel = runner.invoke(args=["admin", "cancel", blocker])
    assert cancel.exit_code == 0, cancel.output
    assert shared_stack.wait_job(blocker, timeout=30).status == "CANCELLED"
