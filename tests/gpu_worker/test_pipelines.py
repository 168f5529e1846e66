"""The demo video pipeline and the learned pipeline, run through the handler."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gpu_worker.handler import reset_runtime, run_job, runtime
from tests.gpu_worker.conftest import SR_REPO
from tests.gpu_worker.media import read_clip


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
    from tests.app.test_pipeline_form import png_bytes

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


def test_sr_learned_downloads_its_weights_and_runs_them(
    worker_env, files, clip_bytes, hub, monkeypatch, tmp_path
):
    import torch

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("SR_MODEL_REPO", SR_REPO)
    reset_runtime()
    result = run_job(video_job(files, clip_bytes, pipeline="sr_learned", params={"crf": 0}))
    assert "error" not in result, result
    assert result["result"]["model"] == SR_REPO and result["result"]["scale"] == 2
    assert result["metrics"]["model_load_s"] > 0
    out = tmp_path / "out.mp4"
    out.write_bytes(files.uploads["sr_learned.mp4"])
    produced = read_clip(out)
    assert (produced["width"], produced["height"], produced["frames"]) == (128, 96, 12)

    # The frames are the network's output (compared in luma, which 4:2:0 keeps at full
    # resolution), not a plain upscale.
    source = tmp_path / "in.mp4"
    source.write_bytes(clip_bytes)
    first_in = read_clip(source)["first"]
    net = runtime().loader.wait("sr_learned")[0]["net"]
    with torch.inference_mode():
        x = torch.from_numpy(first_in).permute(2, 0, 1)[None].float() / 255
        expected = (net(x).clamp(0, 1) * 255).round()[0].permute(1, 2, 0).numpy()
    got = luma(produced["first"])
    assert np.abs(got - luma(expected)).mean() < 6
    upscaled = luma(first_in.repeat(2, axis=0).repeat(2, axis=1))
    assert np.abs(got - upscaled).mean() > 2 * np.abs(got - luma(expected)).mean()

    # The weights went straight to MODEL_DIR; nothing was written under HF_HOME.
    assert list((tmp_path / "volume" / "models").rglob("model.safetensors"))
    assert not (tmp_path / "volume" / "huggingface").exists()


def test_jobs_wait_for_a_background_load_and_report_its_progress(
    worker_env, files, clip_bytes, hub, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="gpu_worker")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("SR_MODEL_REPO", SR_REPO)
    reset_runtime()
    hub.throttle_bps = 8_000  # the weights take a couple of seconds
    runtime().loader.start(["sr_learned"])
    result = run_job(video_job(files, clip_bytes, pipeline="sr_learned", params={"max_frames": 2}))
    assert "error" not in result, result
    assert f"downloading model {SR_REPO}: 0.0" in caplog.text
    assert result["metrics"]["model_load_s"] > 0.5


def test_a_failed_model_load_fails_jobs_and_asks_for_a_new_worker(
    worker_env, files, clip_bytes, hub, monkeypatch
):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("SR_MODEL_REPO", SR_REPO)
    reset_runtime()
    hub.reported_size["model.safetensors"] = 40 * 10**12
    first = run_job(video_job(files, clip_bytes, pipeline="sr_learned"))
    assert first["refresh_worker"] is True
    assert first["error"].startswith("pipeline sr_learned: model loading failed: not enough space")
    calls = len(hub.requests)
    second = run_job(video_job(files, clip_bytes, pipeline="sr_learned"))
    assert second == first and len(hub.requests) == calls  # the same error, at once
    assert "error" not in run_job({"id": "e", "input": {"pipeline": "echo"}})  # echo unaffected


@pytest.mark.parametrize(
    ("files_in_repo", "expected"),
    [
        ({"config.json": b"{not json", "model.safetensors": b"x"}, "is not a valid model config"),
        (
            {"config.json": b'{"scale": 2}', "model.safetensors": b"garbage"},
            "does not fit the ESPCN network",
        ),
    ],
)
def test_broken_weights_are_a_load_error(
    worker_env, files, clip_bytes, hub, monkeypatch, files_in_repo, expected
):
    hub.add_repo("test-org/broken", files_in_repo)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("SR_MODEL_REPO", "test-org/broken")
    reset_runtime()
    result = run_job(video_job(files, clip_bytes, pipeline="sr_learned"))
    assert result["refresh_worker"] is True and expected in result["error"], result


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
