"""Hostile media: files small on disk that decode to huge frames are refused from their
headers and packets, before the decoder allocates them (issue 16, item 4)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.worker import flat_jpeg, mjpeg_mkv, png_bomb, run_hostile_child
from gpu_worker import imagesize
from gpu_worker.handler import run_job
from tests.gpu_worker.conftest import SR_MODEL
from tests.gpu_worker.media import make_clip

ROOT = Path(__file__).resolve().parents[2]


def video_job(files, data, name="clip.mkv", pipeline="video_enhance", key="video"):
    files.files[name] = data
    return {
        "id": "job-h",
        "input": {
            "pipeline": pipeline,
            "inputs": {key: files.url(f"files/{name}?sig=abc")},
            "output": {"put_url": files.url("upload/out?sig=abc")},
        },
    }


def test_a_video_that_grows_mid_stream_is_refused_at_its_first_oversize_frame(
    worker_env, files, tmp_path
):
    grows = mjpeg_mkv(tmp_path / "grows.mkv", [(64, 64)] * 3 + [(12000, 12000)] * 2, (64, 64))
    assert grows.stat().st_size < 2_000_000
    result = run_job(video_job(files, grows.read_bytes()))
    assert result["error"] == (
        "inputs.video: frame 12000×12000 (frame 4) exceeds the 4096×4096 limit of "
        "video_enhance; send a file no larger than that"
    )


def test_frames_past_max_frames_are_never_decoded(worker_env, files, tmp_path):
    """With ``max_frames`` taken, the rest of the file is not read: an oversize frame after
    them neither costs decoding nor fails the job."""
    grows = mjpeg_mkv(tmp_path / "grows.mkv", [(64, 64)] * 3 + [(12000, 12000)] * 2, (64, 64))
    job = video_job(files, grows.read_bytes())
    job["input"]["params"] = {"max_frames": 2}
    result = run_job(job)
    assert "error" not in result, result
    assert result["result"]["frames"] == 2 and result["result"]["width"] == 128


def test_a_video_whose_header_declares_huge_frames_is_refused_before_decoding(
    worker_env, files, tmp_path
):
    declared = mjpeg_mkv(tmp_path / "big.mkv", [(12000, 12000)], (12000, 12000))
    result = run_job(video_job(files, declared.read_bytes()))
    assert result["error"].startswith(
        "inputs.video: frame 12000×12000 exceeds the 4096×4096 limit of video_enhance"
    )


def test_a_hostile_video_costs_the_worker_no_more_memory_than_an_honest_one(
    worker_env, files, tmp_path
):
    """Peak RSS of a fresh worker process (ru_maxrss): one 12000×12000 RGB frame alone is
    432 MB, so a frame decoded before its refusal would show."""
    honest_clip = make_clip(tmp_path / "honest.mp4", frames=4, audio=False)
    files.files["honest.mp4"] = honest_clip.read_bytes()
    files.files["grows.mkv"] = mjpeg_mkv(
        tmp_path / "grows.mkv", [(64, 64)] * 3 + [(12000, 12000)] * 2, (64, 64)
    ).read_bytes()
    env = dict(os.environ, TORCH_DEVICE="cpu", PYTHONPATH=str(ROOT))
    honest = run_hostile_child("video_enhance", files.url("files/honest.mp4?sig=a"), env)
    hostile = run_hostile_child("video_enhance", files.url("files/grows.mkv?sig=a"), env)
    assert honest["error"] is None, honest
    assert "exceeds the 4096×4096 limit of video_enhance" in hostile["error"]
    assert hostile["peak_rss_mb"] < honest["peak_rss_mb"] + 100, (honest, hostile)


def test_frames_that_change_size_within_the_limit_are_refused_by_name(worker_env, files, tmp_path):
    changes = mjpeg_mkv(tmp_path / "changes.mkv", [(64, 64), (64, 64), (96, 80)], (64, 64))
    result = run_job(video_job(files, changes.read_bytes()))
    assert result["error"] == (
        "inputs.video: frame 3 is 96×80 in a 64×64 video; frames that change size are not supported"
    )


def test_the_decoder_itself_refuses_frames_it_was_not_told_about(
    worker_env, files, tmp_path, monkeypatch
):
    """For codecs whose packets carry no size we read (H.264...), FFmpeg's max_pixels stops
    the decoder before it allocates: with the MJPEG packet check off, the decoder refuses."""
    from gpu_worker import media

    monkeypatch.setattr(media, "SELF_DESCRIBING_CODECS", set())
    grows = mjpeg_mkv(tmp_path / "grows.mkv", [(64, 64)] * 3 + [(12000, 12000)], (64, 64))
    result = run_job(video_job(files, grows.read_bytes()))
    assert result["error"] == (
        "inputs.video: frame 4 is larger than the 4096×4096 limit of video_enhance; "
        "send a video no larger than that"
    )


@pytest.fixture
def sr_env(worker_env, hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("UPSCALE_MODEL", SR_MODEL)
    monkeypatch.setenv("TORCH_DEVICE", "cpu")
    return worker_env


def test_a_31_kb_png_of_16000_by_16000_is_refused_from_its_header(sr_env, files, tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 40_000
    result = run_job(video_job(files, bomb.read_bytes(), "bomb.png", "upscale", "file"))
    assert result["error"] == (
        "inputs.file: frame 16000×16000 exceeds the 4096×4096 limit of upscale; send a file "
        "no larger than that"
    )


def test_a_jpeg_over_the_pixel_budget_is_refused_from_its_header(sr_env, files):
    result = run_job(video_job(files, flat_jpeg(4000, 4000), "wide.jpg", "upscale", "file"))
    assert result["error"].startswith(
        "inputs.file: frame 4000×4000 has 16.0 megapixels, over the 9.4-megapixel limit of upscale"
    )


def test_image_headers_are_read_without_decoding(tmp_path):
    assert imagesize.size_of(flat_jpeg(12000, 9000)) == (12000, 9000)
    assert imagesize.file_size_of(png_bomb(tmp_path / "b.png", 300, 200)) == (300, 200)
    vp8l = b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f" + ((99) | (49 << 14)).to_bytes(
        4, "little"
    )
    assert imagesize.size_of(vp8l) == (100, 50)
    assert imagesize.size_of(b"not an image") is None
    assert imagesize.size_of(b"\xff\xd8\xff\xe0\x00") is None  # cut short
