"""Several endpoints (issue 18) on real parts: one local endpoint process serving ``video``
(video_enhance, upscale; at most 1 worker) and ``light`` (echo; at most 2), routed by
``RUNPOD_ENDPOINTS`` and the specs in deploy/endpoints, the web app, a Celery worker.

The video endpoint's worker stands in for a long GPU job (deploy/stack/long_worker.py); the light
endpoint runs the real GPU worker's echo pipeline.
"""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path

import pytest

from app.models import Status
from deploy.stack.local_endpoint import LONG_WORKER_COMMAND, endpoint_spec
from tests.e2e.test_browser import make_video
from tests.tasks.conftest import VIDEO, Stack, stack
from tests.tasks.test_diagnosis import CRASHING_WORKER, login_admin

pytestmark = pytest.mark.timeout(300)

TOKEN = {"Authorization": "Bearer test-api-token"}


def endpoints(video_command: str = LONG_WORKER_COMMAND, **video: object) -> list:
    common = {"idle_timeout": 60, "webhook_retry_delay": 1}
    return [
        endpoint_spec(
            "video",
            workers_max=1,
            worker_command=video_command,
            env={"LONG_WORKER_S": "25"},
            **common,
            **video,
        ),
        endpoint_spec("light", workers_max=2, **common),
    ]


@functools.cache
def clip() -> bytes:
    """A real small MP4: the video pipelines' uploads are probed (echo takes any bytes)."""
    with tempfile.TemporaryDirectory() as folder:
        return make_video(Path(folder) / "clip.mp4").read_bytes()


def submit(s: Stack, pipeline: str, **params: object) -> str:
    """Submit through the JSON API, as a client would; returns the job id."""
    body = VIDEO if pipeline == "echo" else clip()
    data = {"pipeline": pipeline, **{f"param.{k}": str(v) for k, v in params.items()}}
    response = s.browser.post(
        s.web.url("/api/jobs"),
        headers=TOKEN,
        data=data,
        files={"file": ("clip.mp4", body, "video/mp4")},
        timeout=60,
    )
    assert response.status_code in (201, 202), response.text[:500]
    return response.json()["id"]


def api_job(s: Stack, job_id: str) -> dict:
    return s.browser.get(s.web.url(f"/api/jobs/{job_id}"), headers=TOKEN, timeout=30).json()


def at_endpoint(s: Stack, job_id: str, endpoint: str) -> str | None:
    """The job's status as its endpoint reports it (None before it has a RunPod id)."""
    runpod_id = s.job(job_id).runpod_id
    if not runpod_id:
        return None
    return s.endpoint.get(f"status/{runpod_id}", endpoint).json().get("status")


def cli(s: Stack, *args: str):
    return s.app.test_cli_runner().invoke(args=list(args))


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    with stack(tmp_path_factory.mktemp("two-endpoints"), endpoints=endpoints()) as running:
        login_admin(running)
        yield running


def test_a_long_video_job_does_not_delay_an_echo_job_on_light(two):
    video = submit(two, "video_enhance")
    two.wait_job(video, "IN_PROGRESS", timeout=90, sweep=True)
    echo = submit(two, "echo")
    done = two.wait_job(echo, timeout=90)
    assert done.status == "COMPLETED", done.error
    # The echo job went in after the video job started and finished while it still runs:
    # the two endpoints' queues and workers are their own.
    assert two.job(video).status == "IN_PROGRESS"
    assert at_endpoint(two, video, "video") == "IN_PROGRESS"
    assert (api_job(two, echo)["endpoint"], api_job(two, video)["endpoint"]) == ("light", "video")
    page = two.page(echo)
    assert re.search(r'endpoint <b id="endpoint">light</b>', page), "the job page names it"
    two.wait_job(video, "COMPLETED", "FAILED", timeout=90, sweep=True)


def test_jobs_filter_by_endpoint_and_an_unknown_name_is_refused_in_words(two):
    echo = submit(two, "echo")
    listed = two.browser.get(two.web.url("/jobs?endpoint=light"), timeout=30).text
    assert echo[:8] in listed
    assert echo[:8] not in two.browser.get(two.web.url("/jobs?endpoint=video"), timeout=30).text
    wrong = two.browser.get(two.web.url("/jobs?endpoint=nope"), timeout=30)
    assert wrong.status_code == 400
    assert "no endpoint is named" in wrong.text and "video, light" in wrong.text
    dashboard = two.browser.get(two.web.url("/admin/"), timeout=30).text
    assert 'id="endpoint-video"' in dashboard and 'id="endpoint-light"' in dashboard
    assert "Serves video_enhance, upscale" in dashboard and "Serves echo" in dashboard


def test_purging_one_endpoint_leaves_the_others_queued_jobs_queued(two):
    # video: one running (25 s), two waiting behind it (at most 1 worker).
    videos = [submit(two, "video_enhance") for _ in range(3)]
    # light: long echo jobs; with at most 2 workers the third waits in light's queue.
    echoes = [submit(two, "echo", sleep_s=60) for _ in range(3)]

    def queued(job_ids: list[str], endpoint: str) -> list[str]:
        return [
            j
            for j in job_ids
            if at_endpoint(two, j, endpoint) == "IN_QUEUE" and two.job(j).status == "IN_QUEUE"
        ]

    two.endpoint.wait_for(lambda: len(queued(videos, "video")) == 2, 90, what="2 video queued")
    two.endpoint.wait_for(
        lambda: (
            [two.job(j).status for j in echoes].count("IN_PROGRESS") == 2
            and len(queued(echoes, "light")) == 1
        ),
        120,
        what="2 echo jobs running and 1 queued on light",
    )
    waiting_echo = queued(echoes, "light")[0]
    waiting_videos = queued(videos, "video")

    bare = cli(two, "admin", "purge")
    assert bare.exit_code != 0
    assert "--endpoint NAME" in bare.output and "video: video_enhance, upscale" in bare.output
    assert "nothing purged" in bare.output
    assert len(queued(videos, "video")) == 2, "a bare purge purges nothing"

    done = cli(two, "admin", "purge", "--endpoint", "video")
    assert done.exit_code == 0, done.output
    assert "purged endpoint video: it removed 2 queued job(s)" in done.output
    for job_id in waiting_videos:
        two.wait_job(job_id, "CANCELLED", timeout=60, sweep=True)
    # light's waiting job is untouched, here and at its endpoint.
    assert two.job(waiting_echo).status == "IN_QUEUE"
    assert at_endpoint(two, waiting_echo, "light") == "IN_QUEUE"
    unknown = cli(two, "admin", "purge", "--endpoint", "nope")
    assert unknown.exit_code != 0 and "no endpoint is named 'nope'" in unknown.output

    for job_id in echoes:
        cli(two, "admin", "cancel", job_id)
    for job_id in [*echoes, *videos]:
        two.wait_job(job_id, timeout=90, sweep=True)


def test_health_reports_each_endpoint(two):
    health = cli(two, "admin", "health")
    assert health.exit_code == 0, health.output
    for name in ("video", "light"):
        assert f"endpoint {name} ({name}): workers:" in health.output


def test_a_crash_looping_endpoint_leaves_the_other_serving_and_says_why(tmp_path):
    video = {"crash_loop_threshold": 1000}
    with stack(tmp_path, endpoints=endpoints(CRASHING_WORKER, **video)) as s:
        stuck = submit(s, "video_enhance")
        s.wait_job(stuck, "IN_QUEUE", timeout=60)
        echo = submit(s, "echo")
        assert s.wait_job(echo, timeout=90).status == "COMPLETED"
        s.endpoint.wait_for(
            lambda: (
                sum(w["state"] == "unhealthy" for w in s.endpoint.workers("video")["workers"]) >= 2
            ),
            60,
            what="two crashes on video",
        )
        s.worker.process.wait_until(
            lambda: s.reconcile() is not None and s.job(stuck).diagnosis, "a diagnosis", 60
        )
        page = s.page(stuck)
        assert "crash looping" in page and "No such file or directory" in page
        assert s.job(stuck).status == Status.IN_QUEUE
        assert s.job(echo).diagnosis is None
        login_admin(s)
        dashboard = s.browser.get(s.web.url("/admin/"), timeout=30).text
        video_panel, light_panel = (
            dashboard.split('id="endpoint-video"')[1].split("</section>")[0],
            dashboard.split('id="endpoint-light"')[1].split("</section>")[0],
        )
        assert "crash looping" in video_panel
        assert "crash looping" not in light_panel
