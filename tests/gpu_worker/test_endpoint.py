"""Each pipeline through real runpod SDK workers under the local endpoint."""

from __future__ import annotations

import time

import pytest

from deploy.stack.local_endpoint import local_endpoint
from gpu_worker.media import read_image
from gpu_worker.pipelines import FrameLimit
from tests.gpu_worker.conftest import SR_FILE, SR_MODEL, SR_REPO, sample_bytes
from tests.gpu_worker.media import png_bytes, read_clip

pytestmark = pytest.mark.timeout(180)


def worker_env(tmp_path, hub_url: str = "http://127.0.0.1:9", **extra: str) -> dict[str, str]:
    env = {
        "MODEL_DIR": str(tmp_path / "volume" / "models"),
        "HF_HOME": str(tmp_path / "volume" / "huggingface"),
        "WORK_DIR": str(tmp_path / "work"),
        "HF_ENDPOINT": hub_url,
        "UPSCALE_MODEL": SR_MODEL,
        "TRANSFER_BACKOFF_S": "0.05",
        "TRANSFER_DEADLINE_S": "0",  # fail after TRANSFER_ATTEMPTS: no outage to wait out
        "PROGRESS_INTERVAL_S": "0.2",
    }
    env.update(extra)
    return env


def watch(ep, job_id: str, timeout: float = 90.0) -> tuple[dict, list]:
    """Poll the job to a terminal status, keeping every progress update seen on the way."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ep.get(f"status/{job_id}").json()
        if status["status"] == "IN_PROGRESS" and status.get("output") not in (None, *seen):
            seen.append(status["output"])
        if status["status"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
            return status, seen
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} still {status} after {timeout}s")


def test_pipelines_and_input_failures_through_the_local_endpoint(tmp_path, hub, files, clip_bytes):
    files.files["clip.mp4"] = clip_bytes
    files.files["data.bin"] = sample_bytes(5000)
    files.files["slow.bin"] = b"x"
    limit = len(clip_bytes) + 1000
    files.files["big.bin"] = sample_bytes(limit + 1)
    # The weights take about two seconds: jobs must wait for them.
    hub.throttle_bps = len(hub.repos[SR_REPO].files[SR_FILE]) // 2
    env = worker_env(
        tmp_path,
        hub.url,
        PRELOAD_PIPELINES="upscale",
        MAX_INPUT_BYTES=str(limit),
        DOWNLOAD_READ_TIMEOUT_S="0.5",
        TRANSFER_ATTEMPTS="2",
    )
    with local_endpoint(tmp_path / "ep", env=env, workers_max=1, idle_timeout=30) as ep:
        api = ep.api()

        sr = api.run(
            {
                "pipeline": "upscale",
                "params": {"max_frames": 6},
                "inputs": {"file": files.url("files/clip.mp4?sig=s")},
                "output": {
                    "put_url": files.url("upload/sr.mp4?sig=s"),
                    "content_type": "video/mp4",
                },
                "job_key": "app-sr",
            }
        )
        status, seen = watch(ep, sr["id"])
        assert status["status"] == "COMPLETED", status.get("error")
        assert any(f"downloading model {SR_REPO}" in str(s) for s in seen), seen
        out = status["output"]
        assert out["pipeline"] == "upscale" and out["job_key"] == "app-sr"
        assert out["output"]["url"] == files.url("upload/sr.mp4")
        assert out["metrics"]["frames"] == 6 and out["metrics"]["model_load_s"] > 0.5
        produced = tmp_path / "sr.mp4"
        produced.write_bytes(files.uploads["sr.mp4"])
        assert read_clip(produced)["width"] == 128

        files.files["photo.png"] = png_bytes(20, 14)
        image = api.run(
            {
                "pipeline": "upscale",
                "inputs": {"file": files.url("files/photo.png?sig=s")},
                "output": {"put_url": files.url("upload/photo.png?sig=s")},
            }
        )
        status, _ = watch(ep, image["id"])
        assert status["status"] == "COMPLETED", status.get("error")
        assert status["output"]["output"]["content_type"] == "image/png"
        (tmp_path / "photo.png").write_bytes(files.uploads["photo.png"])
        upscaled, codec = read_image(tmp_path / "photo.png", limit=FrameLimit())
        assert upscaled.shape == (28, 40, 3) and codec == "png"

        video = api.run(
            {
                "pipeline": "video_enhance",
                "inputs": {"video": files.url("files/clip.mp4?sig=s")},
                "output": {
                    "put_url": files.url("upload/enh.mp4?sig=s"),
                    "content_type": "video/mp4",
                },
            }
        )
        status, _ = watch(ep, video["id"])
        assert status["status"] == "COMPLETED", status.get("error")
        assert status["output"]["result"]["frames"] == 12
        produced.write_bytes(files.uploads["enh.mp4"])
        clip = read_clip(produced)
        assert (clip["width"], clip["height"], clip["audio_codec"]) == (128, 96, "aac")

        echo = api.run(
            {
                "pipeline": "echo",
                "params": {"n": 1},
                "inputs": {"data": files.url("files/data.bin?sig=s")},
            }
        )
        status, _ = watch(ep, echo["id"])
        assert status["status"] == "COMPLETED", status.get("error")
        assert status["output"]["echo"] == {"n": 1}
        assert status["output"]["result"]["inputs"]["data"]["size"] == 5000

        failures = {
            "missing": ({"video": files.url("files/missing.mp4?sig=s")}, "answered 404 Not Found"),
            "too large": (
                {"video": files.url("files/big.bin?sig=s")},
                "larger than the worker's limit of",
            ),
            "scheme": (
                {"video": "ftp://files.example/clip.mp4"},
                "inputs.video: only http and https URLs are accepted, got ftp",
            ),
        }
        for name, (inputs, expected) in failures.items():
            job = api.run({"pipeline": "echo", "inputs": inputs})
            status, _ = watch(ep, job["id"])
            assert status["status"] == "FAILED", (name, status)
            assert expected in status["error"], (name, status["error"])
            assert "sig=s" not in status["error"] and "Traceback" not in status["error"]

        files.stall_s = 1.5
        job = api.run({"pipeline": "echo", "inputs": {"video": files.url("files/slow.bin")}})
        status, _ = watch(ep, job["id"])
        assert status["status"] == "FAILED"
        assert status["error"].endswith("after 2 attempts: no data for 0.5 s (read timeout)")

    assert not list((tmp_path / "work").glob("gpu-job-*"))  # temporary files are gone


def test_a_model_that_cannot_load_fails_jobs_with_the_cause_and_replaces_the_worker(tmp_path, hub):
    hub.reported_size[SR_FILE] = 30 * 10**12  # the volume is far too small
    env = worker_env(tmp_path, hub.url, PRELOAD_PIPELINES="upscale")
    with local_endpoint(tmp_path / "ep", env=env, workers_max=1, idle_timeout=30) as ep:
        job = ep.api().run({"pipeline": "upscale", "inputs": {"file": "http://127.0.0.1:9/v.mp4"}})
        status, _ = watch(ep, job["id"])
        assert status["status"] == "FAILED"
        assert status["error"].startswith(
            f"pipeline upscale: model loading failed: not enough space for model {SR_REPO}@main"
        )
        assert "grow the network volume" in status["error"]
        first_worker = status["workerId"]

        def replaced():
            workers = ep.workers()["workers"]
            return any(
                w["id"] == first_worker and w["state"] not in ("running", "idle") for w in workers
            ) or not any(w["id"] == first_worker for w in workers)

        ep.wait_for(replaced, timeout=30, what="the worker that failed to load to be stopped")

        # The endpoint keeps serving: an echo job gets a fresh worker and completes.
        echo = ep.api().run({"pipeline": "echo", "params": {"ok": True}})
        status, _ = watch(ep, echo["id"])
        assert status["status"] == "COMPLETED" and status["workerId"] != first_worker


def test_two_workers_on_one_volume_download_the_model_once(tmp_path, hub, files, clip_bytes):
    files.files["clip.mp4"] = clip_bytes
    # Slow enough (about four seconds) that both workers start while it downloads.
    hub.throttle_bps = len(hub.repos[SR_REPO].files[SR_FILE]) // 4
    env = worker_env(tmp_path, hub.url, PRELOAD_PIPELINES="upscale")
    with local_endpoint(
        tmp_path / "ep", env=env, workers_min=2, workers_max=2, idle_timeout=30
    ) as ep:
        ep.wait_for(lambda: ep.workers()["summary"]["total"] == 2, timeout=30, what="2 workers")
        jobs = [
            ep.api().run(
                {
                    "pipeline": "upscale",
                    "params": {"max_frames": 2},
                    "inputs": {"file": files.url("files/clip.mp4")},
                    "output": {"inline": True},
                }
            )
            for _ in range(2)
        ]
        for job in jobs:
            status, _ = watch(ep, job["id"])
            assert status["status"] == "COMPLETED", status.get("error")
        workers = {w["id"] for w in ep.workers()["workers"]}
    weights = hub.repos[SR_REPO].files[SR_FILE]
    assert len(workers) == 2
    assert hub.bytes_served(SR_FILE) == len(weights)
    assert len([s for s in hub.served if s.path == SR_FILE]) == 1
