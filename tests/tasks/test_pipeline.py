"""Upload → GPU job → result, on real parts, and the failures a user sees on the job page."""

from __future__ import annotations

import os

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
    # The submitter reads the worker's words without the exception's class (issue 21).
    assert "the model rejected frame 7" in page and "EchoError" not in page
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


def test_s3_mode_round_trip(tmp_path):
    """Inputs and results in an S3-compatible store (moto's server): workers get presigned
    URLs and never hold credentials."""
    from deploy.stack.services import moto_s3_server
    from tests.tasks.conftest import stack

    with moto_s3_server(tmp_path) as s3:
        bucket = s3.create_bucket("gpu-jobs-test")
        with stack(tmp_path / "s", extra_env=s3.env(bucket)) as s:
            job_id = s.upload(return_input="file")
            job = s.wait_job(job_id, timeout=90)
            assert job.status == "COMPLETED", job.error
            keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
            assert {job.input_key, job.output_key} <= keys
            page = s.page(job_id)
            link = page.split('id="download"')[0].rsplit('href="', 1)[1].split('"')[0]
            link = link.replace("&amp;", "&")
            assert link.startswith(s3.endpoint_url) and "Signature" in link
            assert s.browser.get(link, timeout=30).content == VIDEO
            # Nothing stayed behind in the local staging folder.
            assert not any((tmp_path / "s" / "storage" / ".staging").iterdir())


if os.environ.get("TEST_DATABASE_URL"):  # CI sets it; SQLite is covered everywhere above

    def test_end_to_end_on_postgresql(tmp_path):
        from tests.app.database import postgres_schema
        from tests.tasks.conftest import stack

        with postgres_schema() as url, stack(tmp_path, extra_env={"DATABASE_URL": url}) as s:
            job_id = s.upload(return_input="file")
            job = s.wait_job(job_id, timeout=90)
            assert job.status == "COMPLETED", job.error
            assert job.output_size == len(VIDEO)


def test_cli_submit_waits_with_progress_and_prints_the_result(shared_stack, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(VIDEO)
    runner = shared_stack.app.test_cli_runner()
    args = [
        "jobs",
        "submit",
        str(clip),
        "--param",
        "return_input=file",
        "--wait",
        "--timeout",
        "90",
    ]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    assert "created" in result.output and " done" in result.output
    url = result.output.split("result: ", 1)[1].split()[0]
    assert shared_stack.browser.get(url, timeout=30).content == VIDEO
    health = runner.invoke(args=["admin", "health"])
    assert health.exit_code == 0 and "endpoint local: workers:" in health.output
    bad = runner.invoke(args=["jobs", "submit", str(clip), "--param", "nonsense"])
    assert bad.exit_code != 0 and "NAME=VALUE" in bad.output
