"""The demo video pipeline run through the handler (upscale: test_upscale.py)."""

from __future__ import annotations

import logging

import numpy as np

from gpu_worker.handler import run_job
from tests.gpu_worker.media import png_bytes, read_clip


def video_job(files, clip_bytes, pipeline="video_enhance", params=None, name="clip.mp4"):
    files.files[name] = clip_bytes
    return {
        "id": "job-v",
        "input": {
            "pipeline": pipeline,
            "params": params or {},
            "inputs": {"video": files.url(f"files/{name}?sig=abc")},
            "output": {
                "put_url": files.url(f"upload/{pipeline}.mp4?sig=abc"),
                "content_type": "video/mp4",
            },
            "job_key": "app-job-1",
        },
    }


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def sharpness(rgb: np.ndarray) -> float:
    grey = rgb.astype(np.float32).mean(axis=2)
    lap = grey[1:-1, 1:-1] * 4 - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(lap.var())


def test_video_enhance_upscales_sharpens_and_keeps_audio(
    worker_env, files, clip_bytes, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="gpu_worker")
    result = run_job(video_job(files, clip_bytes))
    assert "error" not in result, result
    out = tmp_path / "out.mp4"
    out.write_bytes(files.uploads["video_enhance.mp4"])
    clip = read_clip(out)
    assert (clip["width"], clip["height"], clip["frames"]) == (128, 96, 12)
    assert (clip["video_codec"], clip["audio_codec"]) == ("h264", "aac")
    assert result["result"]["frames"] == 12 and result["result"]["audio"] is True
    assert result["metrics"]["frames"] == 12 and result["metrics"]["inference_s"] > 0
    assert result["output"]["content_type"] == "video/mp4"
    assert result["output"]["size"] == out.stat().st_size
    assert result["job_key"] == "app-job-1"
    assert "'phase': 'inference', 'frames_done': 8, 'frames_total': 12" in caplog.text

    plain = run_job(video_job(files, clip_bytes, params={"sharpen": 0.0, "denoise": 0.0}))
    assert "error" not in plain, plain
    out.write_bytes(files.uploads["video_enhance.mp4"])
    unsharpened = read_clip(out)["first"]
    assert sharpness(clip["first"]) > 1.2 * sharpness(unsharpened)
    assert list((tmp_path / "work").iterdir()) == []


def test_video_enhance_scale_one_and_max_frames(worker_env, files, clip_bytes, tmp_path):
    result = run_job(video_job(files, clip_bytes, params={"scale": 1, "max_frames": 5}))
    assert "error" not in result, result
    out = tmp_path / "out.mp4"
    out.write_bytes(files.uploads["video_enhance.mp4"])
    clip = read_clip(out)
    assert (clip["width"], clip["height"], clip["frames"]) == (64, 48, 5)


def test_a_file_that_is_not_a_video_is_named(worker_env, files):
    result = run_job(video_job(files, b"this is not a video at all", name="notes.txt"))
    assert result["error"].startswith("inputs.video: the input is not a readable video file")
    assert "Errno" not in result["error"] and "/" not in result["error"].split(";")[0]


def test_an_image_sent_as_a_video_is_refused_not_turned_into_one_frame(worker_env, files):

    result = run_job(video_job(files, png_bytes(), name="photo.png"))
    assert result["error"].startswith("inputs.video: this is an image, not a video"), result


def test_crash_messages_carry_no_paths_or_errno_numbers():
    from gpu_worker.errors import public

    raw = (
        "[Errno 1094995529] Invalid data found when processing input: "
        "'/tmp/gpu-job-12-ab/inputs/video'"
    )
    assert public(raw) == "Invalid data found when processing input: a job file"
    assert public("No such file: /runpod-volume/models/x/y.pth") == "No such file: a job file"
    assert public("ratio 3/4 of http://h/x stays") == "ratio 3/4 of http://h/x stays"


def test_a_silent_video_comes_out_silent(worker_env, files, tmp_path):
    from tests.gpu_worker.media import make_clip

    silent = make_clip(tmp_path / "silent.mp4", width=66, height=38, frames=5, audio=False)
    result = run_job(video_job(files, silent.read_bytes(), params={"scale": 1}))
    assert "error" not in result, result
    out = tmp_path / "out.mp4"
    out.write_bytes(files.uploads["video_enhance.mp4"])
    clip = read_clip(out)
    assert (clip["width"], clip["height"], clip["audio_codec"]) == (66, 38, None)
    assert result["result"]["audio"] is False


def test_a_pipeline_without_weights_says_it_prepares_on_the_device_it_resolved(
    worker_env, monkeypatch
):
    """Jobs waiting for video_enhance's warm-up read what happens, on which device: not
    "loading video_enhance's weights onto auto" (issue 21, item 6)."""
    import dataclasses
    import threading

    from gpu_worker import pipelines
    from gpu_worker.handler import runtime

    monkeypatch.delenv("TORCH_DEVICE", raising=False)  # auto: the CPU on this machine
    real_get = pipelines.get
    real = real_get("video_enhance")
    release = threading.Event()

    def slow_load(dirs, device):
        release.wait(10)
        return real.load(dirs, device)

    slow = dataclasses.replace(real, load=slow_load)
    monkeypatch.setattr(
        pipelines, "get", lambda name: slow if name == "video_enhance" else real_get(name)
    )
    phases: list[str] = []

    def report(text: str) -> None:
        phases.append(text)
        if "video_enhance" in text:
            release.set()

    loaded, _ = runtime().loader.wait("video_enhance", report=report, interval=0.01)
    assert loaded == {"device": "cpu"}
    assert "preparing video_enhance on cpu" in phases
    assert not [p for p in phases if "weights" in p or "auto" in p], phases
