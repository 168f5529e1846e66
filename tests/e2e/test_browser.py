"""A person's whole path through ``make run``: upload a video in the form with Chromium,
watch the job page until the processed video appears, download it."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import requests

from deploy.stack.processes import descendants, wait_gone
from deploy.stack.services import DevServer

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def make_video(path: Path, frames: int = 12, width: int = 96, height: int = 64) -> Path:
    """A small H.264 MP4 of moving bars, made with PyAV."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.zeros((height, width, 3), dtype=np.uint8)
            image[:, (i * 6) % width : (i * 6) % width + 12] = (250, 120, 20)
            image[(i * 4) % height :, :, 2] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def browser():
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        pytest.fail(
            f"{CHROMIUM} is missing: run tests/support/ensure_chromium.sh (apt install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_upload_in_the_browser_and_see_the_processed_video(tmp_path, browser):
    video = make_video(tmp_path / "clip.mp4")
    server = DevServer(tmp_path)
    try:
        server.wait_for_banner()
        base = f"http://127.0.0.1:{server.port}"
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(base + "/")
        # The demo video pipeline is the form's default; the file is all a person must give.
        page.set_input_files("input[type=file]", str(video))
        page.locator("form [type=submit]").first.click()
        page.wait_for_load_state()
        error = page.locator("#error")
        assert not error.count(), f"the form refused the upload: {error.inner_text()}"
        page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
        job_url = page.url

        # The page follows the job live: the processed video appears without a reload.
        player = page.locator("video")
        player.wait_for(state="visible", timeout=180_000)
        source = player.get_attribute("src") or page.locator("video source").first.get_attribute(
            "src"
        )
        assert source, page.content()
        assert "Failed" not in page.inner_text("body")

        result = requests.get(requests.compat.urljoin(job_url, source), timeout=30)
        assert result.status_code == 200
        assert result.headers["Content-Type"].startswith("video/")
        assert len(result.content) > 1000
        assert result.content[4:8] == b"ftyp", "the result is an MP4 file"
        page.close()

        tree = descendants(server.process.pid)
        assert server.interrupt() == 0
        assert not wait_gone(tree, timeout=10)
    finally:
        server.close()
