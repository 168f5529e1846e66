"""What people see, in Chromium, on a real stack (Redis, the local endpoint with runpod SDK
workers, a Celery worker, gunicorn): live progress, queue words, the form's checks and
errors, upload progress and preview, the operator console, retries.

One stack serves the module; the endpoint has one GPU worker slot whose worker takes a few
seconds to start, so the first job sees a cold start and later ones can queue behind others.
Screenshots (desktop and phone width) go to $SCREENSHOTS_DIR when it is set.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.browsing import SHOTS, opened_page
from tests.e2e.test_browser import CHROMIUM_ARGS, browser, make_video  # noqa: F401
from tests.tasks.conftest import Stack, stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LIMIT = 2 * 1024 * 1024  # MAX_UPLOAD_BYTES here: small enough to go over in a test
ADMIN_PASSWORD = "test-admin-password"  # deploy.stack.services.app_env
SLOW_START = f"sh -c 'sleep 4; exec {sys.executable} -u -m gpu_worker'"


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Stack]:
    with stack(
        tmp_path_factory.mktemp("live"),
        endpoint_options={"workers_max": 1, "idle_timeout": 600, "worker_command": SLOW_START},
        extra_env={"MAX_UPLOAD_BYTES": str(LIMIT), "PIPELINES": "echo,video_enhance"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("media") / "clip.mp4", frames=24)


@pytest.fixture
def page(browser, live):  # noqa: F811 - the browser fixture imported above
    with opened_page(browser, live.web.url(""), 30_000) as page:
        yield page


def shoot(page, name: str) -> None:
    """Desktop and phone-width screenshots for a person to look at (when asked for)."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for label, width in (("desktop", 1280), ("phone", 390)):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=f"{SHOTS}/{name}-{label}.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def choose(page, pipeline: str, file: Path | None = None, **values: str) -> None:
    page.goto("/")
    page.select_option("#pipeline", pipeline)
    if file is not None:
        page.set_input_files("input[type=file]", str(file))
    for name, value in values.items():
        page.fill(f"[name='param.{pipeline}.{name}']", value)


def submit_and_open(page) -> str:
    page.locator("#upload-form [type=submit]").click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def job_count(live: Stack) -> int:
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.models import Job

    with live.app.app_context(), session_scope() as session:
        return session.scalar(select(func.count()).select_from(Job))


def status_text(page) -> str:
    return page.locator("#status").inner_text()


def test_a_running_job_shows_its_progress_rising_before_it_ends(page, live, clip):
    choose(page, "echo", clip, sleep_s="8")
    assert page.locator("#preview video.preview").is_visible()
    shoot(page, "upload-form")
    job_id = submit_and_open(page)

    seen: list[str] = []
    percents: list[int] = []
    ticks: set[str] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        text = status_text(page)
        if not seen or seen[-1] != text:
            seen.append(text)
        found = re.search(r"running on a GPU \((\d+)%\)", text)
        if found:
            percents.append(int(found.group(1)))
            ticks.add(page.locator("#execution").inner_text())
            if len(percents) == 3:
                shoot(page, "job-running")
        if text.startswith("done"):
            break
        time.sleep(0.2)
    assert seen and seen[-1].startswith("done"), seen
    # The worker had no idle twin: the page said so while the job waited for it.
    assert any("a GPU worker is starting (cold start)" in s for s in seen), seen
    # Several distinct, rising figures were shown while the job ran: the page followed the
    # worker's reports as they came, not one poll at the end.
    distinct = sorted(set(p for p in percents if p < 100))
    assert len(distinct) >= 3, seen
    assert percents == sorted(percents), percents
    assert len(ticks) >= 3, ticks  # the execution time ticked while it ran
    assert live.job(job_id).status == "COMPLETED"
    page.reload()
    attempts = page.locator("#attempts tr.attempt")
    assert attempts.count() == 1 and "completed" in attempts.first.inner_text()
    shoot(page, "job-done")


def test_waiting_behind_other_jobs_is_told_apart_from_a_cold_start(page, live, clip):
    first = live.upload("a.mp4", clip.read_bytes(), sleep_s=15)
    live.wait_job(first, "IN_PROGRESS", timeout=120)
    second = live.upload("b.mp4", clip.read_bytes(), sleep_s=1)
    third = live.upload("c.mp4", clip.read_bytes(), sleep_s=1)
    live.wait_job(third, "IN_QUEUE", timeout=60)

    page.goto(f"/jobs/{third}")
    page.wait_for_function(
        "document.getElementById('status').innerText.includes('waiting behind 1 job')"
    )
    shoot(page, "job-waiting")
    assert "cold start" not in status_text(page)
    page.goto(f"/jobs/{second}")
    page.wait_for_function(
        "document.getElementById('status').innerText.includes('waiting for a busy GPU worker')"
    )
    assert "cold start" not in status_text(page)
    for job in (first, second, third):
        assert live.wait_job(job, timeout=120).status == "COMPLETED"


def test_a_bad_value_is_caught_in_the_browser_and_nothing_is_lost(page, live, clip):
    before = live.endpoint_requests().get("run", 0)
    choose(page, "echo", clip, sleep_s="-5")
    page.locator("#upload-form [type=submit]").click()
    field = page.locator("[name='param.echo.sleep_s']")
    assert field.evaluate("f => !f.validity.valid && f.validationMessage !== ''")
    time.sleep(0.5)
    assert page.url.endswith("/"), "the browser must not send the form"
    assert field.input_value() == "-5"
    assert page.locator("#pipeline").input_value() == "echo"
    assert page.locator("input[type=file]").evaluate("f => f.files.length") == 1
    assert live.endpoint_requests().get("run", 0) == before


def test_a_fake_video_is_refused_in_the_form_with_everything_kept(page, live, tmp_path):
    fake = tmp_path / "holiday.mp4"
    fake.write_text("this is a text file, not a video\n" * 20)
    jobs_before = job_count(live)
    runs_before = live.endpoint_requests().get("run", 0)
    choose(page, "video_enhance", fake)
    scale = page.locator("[name='param.video_enhance.scale']")
    if scale.count():
        scale.select_option(scale.locator("option").last.get_attribute("value"))
    chosen_scale = scale.input_value() if scale.count() else None
    page.locator("#upload-form [type=submit]").click()
    error = page.locator("#error")
    error.wait_for()
    text = error.inner_text()
    shoot(page, "upload-refused")
    assert "holiday.mp4" in text or "video" in text.lower(), text
    assert "Errno" not in text and "/tmp" not in text
    assert page.url.endswith("/")
    assert page.locator("#pipeline").input_value() == "video_enhance"
    assert page.locator("input[type=file]").evaluate("f => f.files.length") == 1
    if chosen_scale is not None:
        assert scale.input_value() == chosen_scale
    assert live.endpoint_requests().get("run", 0) == runs_before, "no GPU job for a fake"
    assert job_count(live) == jobs_before, "no job row either"


def test_the_upload_shows_its_progress_and_a_preview(page, live, tmp_path):
    image = tmp_path / "pixel.png"
    image.write_bytes(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
        )
    )
    choose(page, "echo", image)
    assert page.locator("#preview img.preview").is_visible()
    assert "pixel.png" in page.locator("#preview-name").inner_text()

    big = make_video(tmp_path / "long.mp4", frames=24, width=640, height=480)
    padded = tmp_path / "padded.mp4"
    padded.write_bytes(big.read_bytes() + b"\0" * max(0, 1_500_000 - big.stat().st_size))
    choose(page, "echo", padded)
    assert page.locator("#preview video.preview").is_visible()
    # A slow uplink, so the upload takes a few seconds to watch.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 400_000},
    )
    page.locator("#upload-form [type=submit]").click()
    shown: list[str] = []
    bar_values: list[float] = []
    read = """() => {
      const s = document.getElementById('upload-status');
      const b = document.getElementById('upload-progress');
      return s ? [s.innerText, b ? Number(b.value) : 0] : null;
    }"""
    while "/jobs/" not in page.url and len(shown) < 2000:
        try:
            state = page.evaluate(read)
        except PlaywrightError:  # the job page is loading: the upload is over
            break
        if state is None:
            break
        text, value = state
        if text and (not shown or shown[-1] != text):
            shown.append(text)
            bar_values.append(value)
            if len(shown) == 3:
                shoot(page, "upload-progress")
        time.sleep(0.05)
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    partial = [s for s in shown if re.search(r"Uploading: .+ of .+ \(([1-9]|[1-9]\d)%\)", s)]
    assert len(partial) >= 2, shown
    assert bar_values == sorted(bar_values), bar_values


def test_a_file_over_the_limit_is_refused_in_the_form(page, live, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (LIMIT + 512 * 1024))
    choose(page, "echo", big, sleep_s="2")
    # The page knows the limit: it says so before sending a byte.
    assert "over the limit of 2 MiB" in page.locator("#error").inner_text()
    page.locator("#upload-form [type=submit]").click()
    assert page.url.endswith("/")
    # A page whose limit is out of date sends it; the app's 413 lands in the form too (as
    # its answer, or, when the app closed the connection mid-upload, as the page's check of
    # the app's current limit).
    page.evaluate("document.getElementById('upload-form').dataset.maxBytes = '0'")
    page.evaluate("document.getElementById('error').remove()")
    page.locator("#upload-form [type=submit]").click()
    page.wait_for_function(
        "(document.getElementById('error') || {innerText: ''}).innerText.includes('limit of 2 MiB')"
    )
    assert "nothing was stored" in page.locator("#error").inner_text()
    shoot(page, "upload-413")
    assert page.url.endswith("/")
    assert page.locator("#pipeline").input_value() == "echo"
    assert page.locator("[name='param.echo.sleep_s']").input_value() == "2"
    assert page.locator("input[type=file]").evaluate("f => f.files.length") == 1


def test_the_dashboard_refreshes_itself_and_shows_a_workers_log_lines(page, live, clip):
    page.goto("/admin/")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.locator("form [type=submit]").click()
    page.wait_for_url(re.compile(r"/admin/$"))
    page.evaluate("window.notReloaded = true")
    shoot(page, "dashboard-start")
    job = live.upload("d.mp4", clip.read_bytes(), sleep_s=4)
    # The new job and the worker running it appear without a reload.
    page.wait_for_function(
        f"document.getElementById('active').innerText.includes('{job[:8]}')", timeout=60_000
    )
    worker = page.locator("#workers tr.worker").first
    worker.wait_for(timeout=60_000)
    worker.locator("summary").click()
    log = worker.locator("div.log table.log-lines").inner_text()
    assert log.strip(), "the worker's last log lines are shown"
    shoot(page, "dashboard")
    assert page.evaluate("window.notReloaded === true"), "updated in place, not reloaded"
    before = page.evaluate("document.getElementById('admin-panel').dataset.refreshed || ''")
    page.wait_for_function(
        f"(document.getElementById('admin-panel').dataset.refreshed || '') !== '{before}'"
    )
    assert page.locator("#workers tr.worker details[open]").count() >= 1, "opened log stays open"
    live.wait_job(job, timeout=120)
    page.wait_for_function(
        f"!document.getElementById('active').innerText.includes('{job[:8]}')", timeout=60_000
    )
    # The refresh task logs one short line, not the snapshot with every log tail.
    lines = [x for x in live.worker.log_tail(5000).splitlines() if "refresh_endpoint" in x]
    assert all(len(x) < 400 for x in lines), max(lines, key=len)


def test_retry_lists_both_attempts_and_resubmit_fills_the_form(page, live, clip):
    choose(page, "echo", clip, fail="boom on purpose")
    job_id = submit_and_open(page)
    # The page reloads itself once the job ends; then its Retry button is there.
    page.locator("#retry").wait_for(timeout=120_000)
    assert page.locator("#attempts tr.attempt").count() == 1
    assert "$" in page.locator("#timings").inner_text()
    page.locator("#retry").click()
    page.wait_for_url(re.compile(job_id))
    timings = page.locator("#timings").inner_text()
    assert "$" not in timings, "the new attempt shows none of the last one's figures"
    page.wait_for_function(
        "document.querySelectorAll('#attempts tr.attempt').length === 2", timeout=120_000
    )
    page.locator("#retry").wait_for(timeout=120_000)
    rows = page.locator("#attempts tr.attempt")
    assert rows.count() == 2
    assert all("boom on purpose" in rows.nth(i).inner_text() for i in range(2))
    shoot(page, "job-retried")

    page.locator("#resubmit").click()
    page.wait_for_url(re.compile(r"/\?from="))
    assert page.locator("#pipeline").input_value() == "echo"
    assert page.locator("[name='param.echo.fail']").input_value() == "boom on purpose"
    assert "clip.mp4" in page.locator("#reuse").inner_text()
    page.fill("[name='param.echo.fail']", "")
    new_id = submit_and_open(page)
    assert new_id != job_id
    assert live.wait_job(new_id, timeout=120).status == "COMPLETED"


def test_the_jobs_list_filters_by_status(page, live):
    page.goto("/admin/")
    if "login" in page.url:
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.locator("form [type=submit]").click()
    page.goto("/jobs")
    page.select_option("#filters select[name=status]", "FAILED")
    page.locator("#filters [type=submit]").click()
    rows = page.locator("#jobs tr").all_inner_texts()[1:]
    assert rows and all("failed" in row for row in rows), rows
    shoot(page, "jobs-list")
