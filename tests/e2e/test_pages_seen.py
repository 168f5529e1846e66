"""The end-user pages as a person sees them, in Chromium, on the app under gunicorn with a
real database, Redis and storage (issue 21): figures that keep moving while a job runs, the
queue's words and estimate, errors worded for each reader, the result, the form without
JavaScript, accessibility (axe-core), dark mode, local times, the jobs list refreshing.

The job rows are put in each state by the lifecycle's own functions (``apply_status``) or
written as a reconcile sweep would: what these tests look at is what the pages make of a
state, not how a GPU gets there (tests/e2e/test_live_pages.py runs that whole way).
Screenshots (1280×800 and 390×844, light and dark) go to $SCREENSHOTS_DIR when it is set.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from app import create_app
from app.db import session_scope
from app.lifecycle.status import apply_status
from app.models import Job, Snapshot, Status, utcnow
from app.services import services_of
from app.settings import Settings
from deploy.stack.services import app_env, create_tables, gunicorn_web
from tests.e2e.browsing import opened_page, screenshots
from tests.e2e.test_browser import CHROMIUM_ARGS, browser  # noqa: F401 - fixture
from tests.support.services import redis_service  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LIMIT = 256 * 1024
ADMIN_PASSWORD = "test-admin-password"  # deploy.stack.services.app_env


@dataclass
class Site:
    url: str
    app: Any

    def add(self, **fields: Any) -> str:
        """A job row as the lifecycle leaves it in some state."""
        fields.setdefault("pipeline", "echo")
        fields.setdefault("input_name", "clip.mp4")
        with self.app.app_context(), session_scope() as session:
            job = Job(**fields)
            session.add(job)
            session.commit()
            return job.id

    def apply(self, job_id: str, payload: dict[str, Any]) -> None:
        """A status from the endpoint, applied as a poll or webhook applies it."""
        with self.app.app_context(), session_scope() as session:
            job = session.get(Job, job_id)
            apply_status(session, job, payload, "test", services_of(self.app))

    def update(self, job_id: str, **fields: Any) -> None:
        with self.app.app_context(), session_scope() as session:
            job = session.get(Job, job_id)
            for name, value in fields.items():
                setattr(job, name, value)
            session.commit()

    def job(self, job_id: str) -> Job:
        with self.app.app_context(), session_scope() as session:
            job = session.get(Job, job_id)
            session.expunge(job)
            return job

    def snapshot(self, workers: dict[str, int]) -> None:
        """The endpoint's health as reconcile's refresh writes it."""
        with self.app.app_context(), session_scope() as session:
            data = {"health": {"workers": workers, "jobs": {}}, "taken_at": time.time()}
            session.merge(Snapshot(name="endpoint", data=data))
            session.commit()

    def clear(self) -> None:
        with self.app.app_context(), session_scope() as session:
            session.query(Job).delete()
            session.query(Snapshot).delete()
            session.commit()

    def store(self, key: str, data: bytes) -> None:
        path = services_of(self.app).storage.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_service) -> Iterator[Site]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("pages")
    port = _free_port()
    env = app_env(
        tmp,
        redis_url=redis_service.url,
        web_port=port,
        extra={
            "RUNPOD_API_KEY": "rp-test-key",
            "RUNPOD_ENDPOINT_ID": "local",
            "RUNPOD_ENDPOINT_BASE_URL": "http://127.0.0.1:9/v2",  # never reached here
            "MAX_UPLOAD_BYTES": str(LIMIT),
            "PIPELINES": "echo,video_enhance,upscale",
        },
    )
    create_tables(env)
    app = create_app(Settings.from_env(env))
    with gunicorn_web(env, tmp, port=port) as web:
        web.wait_ready()
        yield Site(url=web.base_url, app=app)
    app.extensions["db"].engine.dispose()


@pytest.fixture
def page(browser, site):  # noqa: F811 - the browser fixture imported above
    site.clear()
    viewport = {"width": 1280, "height": 800}
    with opened_page(browser, site.url, 20_000, viewport=viewport) as page:
        yield page


def log_in(page) -> None:
    page.goto("/admin/login")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.locator("form [type=submit]").click()
    page.wait_for_url(re.compile(r"/admin/$"))


def seconds_in(text: str) -> float:
    return float(re.search(r"([\d.]+) s", text).group(1))


def serious(page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    found = Axe().run(page).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def test_a_running_jobs_time_and_cost_tick_so_far_until_it_ends(page, site):
    job = site.add(status=Status.IN_QUEUE, submitted_at=utcnow() - timedelta(seconds=12))
    # The endpoint's IN_PROGRESS status carries the execution time so far (10.4 s): it is
    # not the job's execution time, and must not freeze the page at 10.4 s.
    site.apply(job, {"status": "IN_PROGRESS", "executionTime": 10400, "delayTime": 1500})
    assert site.job(job).execution_ms is None and site.job(job).cost_usd is None
    site.update(job, started_at=utcnow() - timedelta(seconds=10), progress={"percent": 40})
    page.goto(f"/jobs/{job}")
    first = page.locator("#execution").inner_text()
    cost = page.locator("#cost").inner_text()
    assert first.endswith("so far") and cost.endswith("so far"), (first, cost)
    page.wait_for_function(
        f"parseFloat(document.getElementById('execution').innerText) >= {seconds_in(first) + 1}"
    )
    later = page.locator("#execution").inner_text()
    assert "so far" in later and seconds_in(later) > seconds_in(first)
    assert page.locator("#cost").inner_text() != cost, "the cost ticks with the time"
    assert page.locator("#status-live").get_attribute("aria-live") == "polite"
    assert "running on a GPU" in page.locator("#status-live").inner_text()
    screenshots(page, "job-running")
    assert not serious(page), serious(page)

    # The job ends: the final figures replace the running ones, without "so far", and the
    # live region says so (a screen reader hears "done").
    site.apply(job, {"status": "COMPLETED", "executionTime": 12000, "output": {"echo": {}}})
    page.wait_for_function("document.getElementById('status-live').innerText === 'done'")
    assert page.locator("#execution").inner_text() == "12.0 s"
    assert "so far" not in page.locator("#cost").inner_text()
    assert page.locator("#result h2").inner_text() == "Result"


def test_waiting_says_its_place_and_a_range_and_the_dashboard_says_the_same(page, site):
    now = utcnow()
    for i, seconds in enumerate((10, 12, 40)):  # echo's recent runs: median 12 s
        site.add(
            status=Status.COMPLETED,
            execution_ms=seconds * 1000,
            finished_at=now - timedelta(minutes=10 + i),
        )
    running = site.add(
        status=Status.IN_PROGRESS,
        submitted_at=now - timedelta(seconds=30),
        started_at=now - timedelta(seconds=4),
    )
    second = site.add(status=Status.IN_QUEUE, submitted_at=now - timedelta(seconds=20))
    third = site.add(status=Status.IN_QUEUE, submitted_at=now - timedelta(seconds=10))
    site.snapshot({"idle": 0, "running": 1, "initializing": 0})

    page.goto(f"/jobs/{third}")
    status = page.locator("#status").inner_text()
    assert "waiting behind 1 job: 2 of 2 in the GPU queue" in status, status
    assert "every GPU worker is busy" in status
    # 8 s left of the running job (12 s median, 4 s run) + 12 s for the one ahead: starts in
    # about 20 s (a range from the quartiles of the recent runs), done 12 s later.
    assert re.search(r"Starts in about \d+–\d+ s, done in about \d+–\d+ s", status), status
    assert "cold start" not in status
    screenshots(page, "job-waiting")
    page.goto(f"/jobs/{second}")
    status = page.locator("#status").inner_text()
    assert "1 of 2 in the GPU queue" in status and "waiting for a busy GPU worker" in status
    assert "cold start" not in status

    log_in(page)
    rows = page.locator("#active").inner_text()
    assert "2 of 2 in the GPU queue" in rows and "1 of 2 in the GPU queue" in rows, rows
    assert "cold start" not in rows
    assert running[:8] in rows
    assert not serious(page), serious(page)


def test_a_failure_is_worded_for_the_submitter_and_detailed_for_operators(page, site):
    technical = (
        "pipeline upscale: model loading failed: ConnectError: [Errno -2] Name or service not "
        "known while fetching '/root/.cache/huggingface/hub/x.pth'"
    )
    job = site.add(
        pipeline="upscale", status=Status.IN_PROGRESS, started_at=utcnow(), worker_id="w-1"
    )
    site.apply(
        job,
        {"status": "FAILED", "error": technical, "output": {"error_kind": "model_unavailable"}},
    )
    page.goto(f"/jobs/{job}")
    said = page.locator("main").inner_text()
    status = page.locator("#status").inner_text()
    assert "upscale pipeline is unavailable" in status
    assert "Retrying will not help" in status and "tell whoever runs this service" in status
    assert job[:8] in status
    for leak in ("Errno", "/root", "ConnectError", "failed: failed"):
        assert leak not in said, leak
    assert page.locator("#operator-details").count() == 0

    # The form marks the pipeline unavailable once a worker has reported it.
    page.goto("/")
    option = page.locator("#pipeline option[value=upscale]")
    assert option.is_disabled() and "(unavailable)" in option.inner_text()
    assert "upscale is unavailable" in page.locator("#unavailable-upscale").inner_text()
    assert page.locator(".operator-fix").count() == 0
    screenshots(page, "form-unavailable")

    # An operator sees the technical text and what to do about it.
    log_in(page)
    page.goto(f"/jobs/{job}")
    assert "Errno -2" in page.locator("#error-technical").inner_text()
    assert "run one upscale job" in page.locator("#operator-fix").inner_text()
    screenshots(page, "job-failed-admin")
    assert not serious(page), serious(page)
    page.goto("/")
    assert "Errno -2" in page.locator("#unavailable-upscale .operator-fix").inner_text()
    page.goto("/admin/")
    banner = page.locator("#admin-panel #unavailable-upscale").inner_text()
    assert "run one upscale job" in banner and "Errno -2" in banner
    screenshots(page, "dashboard-unavailable")

    # Another kind of failure: the worker's own words, without errno or paths.
    other = site.add(status=Status.IN_PROGRESS, started_at=utcnow())
    site.apply(
        other,
        {
            "status": "FAILED",
            "error": "pipeline echo failed: OSError: [Errno 28] No space "
            "left on device: '/tmp/job-1/out.mp4'",
        },
    )
    page.context.clear_cookies()
    page.goto(f"/jobs/{other}")
    text = page.locator("main").inner_text()
    assert "No space left on device" in text and "Retry" in text
    assert "Errno" not in text and "/tmp" not in text


def test_the_result_has_a_heading_a_summary_and_a_named_download(page, site):
    job = site.add(
        pipeline="video_enhance",
        input_name="holiday.mov",
        params={"scale": 2},
        status=Status.IN_PROGRESS,
        started_at=utcnow() - timedelta(seconds=30),
    )
    key = f"jobs/{job}/output/result.mp4"
    site.update(job, output_key=key, output_content_type="video/mp4")
    site.store(key, b"\x00\x00\x00\x18ftypmp42" + b"\0" * 2000)
    site.apply(
        job,
        {
            "status": "COMPLETED",
            "executionTime": 30000,
            "output": {
                "pipeline": "video_enhance",
                "output": {"url": "signed", "content_type": "video/mp4"},
                "result": {
                    "width": 640,
                    "height": 480,
                    "frames": 250,
                    "fps": 25.0,
                    "audio": True,
                    "device": "cpu",
                },
                "metrics": {"model_load_s": 0, "frames": 250},
            },
        },
    )
    assert site.job(job).status == "COMPLETED", site.job(job).error
    page.goto(f"/jobs/{job}")
    assert page.locator("#result h2").inner_text() == "Result"
    summary = page.locator("#result-summary").inner_text()
    assert "320×240 → 640×480" in summary and "250 frames" in summary, summary
    assert "audio kept" in summary
    raw = page.locator("#result-raw")
    assert raw.evaluate("d => d.tagName === 'DETAILS' && !d.open")
    assert not page.locator("#result-json").is_visible(), "the raw JSON is folded away"
    link = page.locator("#download")
    assert link.get_attribute("download") == "holiday-video_enhance.mp4"
    answer = page.request.get(link.get_attribute("href"))
    assert answer.ok
    assert "holiday-video_enhance.mp4" in answer.headers["content-disposition"]
    screenshots(page, "job-done")
    assert not serious(page), serious(page)


def test_without_javascript_the_form_shows_one_pipeline_and_every_error(browser, site, tmp_path):  # noqa: F811
    site.clear()
    context = browser.new_context(base_url=site.url, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto("/")
        assert page.locator("fieldset[data-pipeline=echo]").is_visible()
        assert not page.locator("fieldset[data-pipeline=video_enhance]").is_visible()
        page.select_option("#pipeline", "video_enhance")
        assert page.locator("fieldset[data-pipeline=video_enhance]").is_visible()
        assert not page.locator("fieldset[data-pipeline=echo]").is_visible()
        screenshots(page, "form-no-js")

        # Two things wrong at once (a value out of range and a file type it does not take):
        # both are listed. noValidate stands for a browser whose checks miss the value.
        text = tmp_path / "notes.txt"
        text.write_text("not a video\n")
        page.select_option("#pipeline", "echo")
        page.fill("[name='param.echo.sleep_s']", "-5")
        page.set_input_files("input[type=file]", str(text))
        page.locator("#upload-form").evaluate("f => { f.noValidate = true; }")
        page.locator("#upload-form [type=submit]").click()
        errors = page.locator("#error li").all_inner_texts()
        assert len(errors) == 2, errors
        assert any("sleep_s" in e for e in errors) and any("text/plain" in e for e in errors)
        screenshots(page, "form-errors-no-js")
        assert page.locator("[name='param.echo.sleep_s']").input_value() == "-5"

        # A file over the limit: the 413 page keeps the pipeline and the typed values.
        big = tmp_path / "big.mp4"
        big.write_bytes(b"\0" * (LIMIT + 64 * 1024))
        page.goto("/")
        page.select_option("#pipeline", "video_enhance")
        page.fill("[name='param.video_enhance.sharpen']", "1.25")
        page.set_input_files("input[type=file]", str(big))
        page.locator("#upload-form [type=submit]").click()
        assert "larger than the limit" in page.locator("#error").inner_text()
        assert page.locator("#pipeline").input_value() == "video_enhance"
        assert page.locator("[name='param.video_enhance.sharpen']").input_value() == "1.25"
        assert page.locator("fieldset[data-pipeline=video_enhance]").is_visible()
        screenshots(page, "form-413-no-js")
    finally:
        context.close()


def test_echo_says_what_it_takes_and_takes_what_it_says(page, site, tmp_path):
    page.goto("/")
    page.select_option("#pipeline", "echo")
    takes = page.locator("fieldset[data-pipeline=echo] .kinds").inner_text()
    assert takes == "Takes: any video or image file.", takes
    assert page.locator("#file").get_attribute("accept") == "video/*,image/*"
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    page.set_input_files("#file", str(text))
    page.locator("#upload-form [type=submit]").click()
    error = page.locator("#error")
    error.wait_for()
    assert "video/*, image/*" in error.inner_text()


def test_every_page_has_landmarks_a_favicon_local_times_and_no_serious_axe_finding(page, site):
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.emulate_media(color_scheme="dark")
    page.goto("/")
    assert page.locator("main").count() == 1 and page.locator("header nav").count() == 1
    assert page.locator("footer").count() == 1
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert page.request.get(icon).ok
    assert page.request.get("/favicon.ico").ok, "no 404 for browsers that ask there"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)", "dark mode follows prefers-color-scheme"
    screenshots(page, "form")
    assert not serious(page), serious(page)
    page.emulate_media(color_scheme="light")

    job = site.add(status=Status.IN_QUEUE, submitted_at=utcnow())
    log_in(page)
    page.goto("/jobs")
    stamp = page.locator("#jobs time").first
    assert stamp.get_attribute("title").endswith(" UTC")
    assert stamp.get_attribute("datetime").endswith("Z")
    assert "UTC" not in stamp.inner_text(), "shown in the reader's time zone"
    screenshots(page, "jobs-list")
    assert not serious(page), serious(page)
    page.goto("/admin/")
    assert not serious(page), serious(page)
    screenshots(page, "dashboard")
    assert not [u for u in missing if "favicon" in u], missing
    assert job


def test_the_jobs_list_follows_jobs_in_flight(page, site):
    job = site.add(status=Status.IN_QUEUE, submitted_at=utcnow())
    log_in(page)
    page.goto("/jobs")
    row = page.locator(f"#jobs tr[data-job='{job}']")
    assert row.get_attribute("data-status") == "IN_QUEUE"
    assert "updates itself" in page.locator("#jobs-refreshing").inner_text()
    site.apply(job, {"status": "IN_PROGRESS"})
    site.apply(job, {"status": "COMPLETED", "executionTime": 2000, "output": {"echo": {}}})
    page.wait_for_function(
        f"document.querySelector(\"#jobs tr[data-job='{job}']\").dataset.status === 'COMPLETED'"
    )
    assert "done" in page.locator(f"#jobs tr[data-job='{job}']").inner_text()
    assert page.locator("#jobs-refreshing").count() == 0, "it stops once nothing is in flight"
