"""``upscale``: a checkpoint in Real-ESRGAN's layout from the (local) hub, loaded by spandrel,
run on a video and on images through the handler."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from gpu_worker.handler import reset_runtime, run_job, runtime
from tests.gpu_worker.conftest import SR_FILE, SR_MODEL, SR_REPO
from tests.gpu_worker.media import read_clip
from tests.gpu_worker.test_pipelines import luma


def upscale_job(files, body: bytes, name: str = "clip.mp4", params=None, ctype="video/mp4"):
    files.files[name] = body
    return {
        "id": "job-u",
        "input": {
            "pipeline": "upscale",
            "params": params or {},
            "inputs": {"file": files.url(f"files/{name}?sig=abc")},
            "output": {"put_url": files.url(f"upload/{name}?sig=abc"), "content_type": ctype},
        },
    }


@pytest.fixture
def sr_hub(worker_env, hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("UPSCALE_MODEL", SR_MODEL)
    reset_runtime()
    return hub


def network_output(rgb: np.ndarray) -> np.ndarray:
    """What the loaded model makes of one frame, computed directly."""
    import torch

    model = runtime().loader.wait("upscale")[0]["model"]
    with torch.inference_mode():
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        return (model(x).clamp(0, 1) * 255).round()[0].permute(1, 2, 0).numpy()


def test_upscale_runs_a_real_esrgan_layout_checkpoint_on_a_video(
    sr_hub, files, clip_bytes, tmp_path
):
    result = run_job(upscale_job(files, clip_bytes, params={"crf": 0, "tile": 32}))
    assert "error" not in result, result
    assert result["result"]["architecture"] == "ESRGAN" and result["result"]["scale"] == 2
    assert result["result"]["model"] == f"{SR_REPO}/{SR_FILE}@main"
    assert result["output"]["content_type"] == "video/mp4"
    out = tmp_path / "out.mp4"
    out.write_bytes(files.uploads["clip.mp4"])
    produced = read_clip(out)
    assert (produced["width"], produced["height"], produced["frames"]) == (128, 96, 12)
    assert produced["audio_codec"] == "aac" and result["result"]["audio"] is True

    # The frames are the network's output (in luma, which 4:2:0 keeps at full resolution),
    # tiles and all, not a plain resize.
    source = tmp_path / "in.mp4"
    source.write_bytes(clip_bytes)
    first_in = read_clip(source)["first"]
    got, expected = luma(produced["first"]), luma(network_output(first_in))
    assert np.abs(got - expected).mean() < 4
    resized = luma(first_in.repeat(2, axis=0).repeat(2, axis=1))
    assert np.abs(got - resized).mean() > 3 * np.abs(got - expected).mean()

    # Only the configured file was downloaded, straight to MODEL_DIR.
    assert [p.name for p in (tmp_path / "volume" / "models").rglob("*.pth")] == [SR_FILE]
    assert not (tmp_path / "volume" / "huggingface").exists()


@pytest.mark.parametrize(
    ("name", "ctype"), [("photo.png", "image/png"), ("photo.jpg", "image/jpeg")]
)
def test_upscale_takes_an_image_and_returns_the_same_format(sr_hub, files, tmp_path, name, ctype):
    from gpu_worker.media import IMAGE_CODECS, read_image, write_image
    from gpu_worker.pipelines import FrameLimit

    yy, xx = np.mgrid[0:24, 0:36]
    rgb = np.stack([xx * 7 % 256, yy * 10 % 256, (xx + yy) * 4 % 256], axis=2).astype(np.uint8)
    codec = {"image/png": "png", "image/jpeg": "mjpeg"}[ctype]
    write_image(rgb, tmp_path / name, codec)
    result = run_job(upscale_job(files, (tmp_path / name).read_bytes(), name=name, ctype=ctype))
    assert "error" not in result, result
    assert result["result"]["kind"] == "image" and result["metrics"]["items"] == 1
    assert (result["result"]["width"], result["result"]["height"]) == (72, 48)
    (tmp_path / "out").write_bytes(files.uploads[name])
    back, back_codec = read_image(tmp_path / "out", limit=FrameLimit())
    assert back.shape == (48, 72, 3) and back_codec == codec
    assert result["output"]["content_type"] == IMAGE_CODECS[codec][0] == ctype
    if codec == "png":  # lossless: what the network made of the image (float rounding aside)
        assert np.abs(back.astype(int) - network_output(rgb)).max() <= 1


def test_tiles_join_without_seams():
    """Tiled and whole-frame results agree where each tile saw enough context."""
    import tempfile
    from pathlib import Path

    import torch

    from bench.sr_weights import compact_safetensors
    from gpu_worker.pipelines.upscale import import_spandrel, upscale_tiled

    spandrel = import_spandrel()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "compact.safetensors"
        path.write_bytes(compact_safetensors())
        model = spandrel.ModelLoader().load_from_file(path).eval()
    x = torch.rand(2, 3, 50, 70)
    whole = upscale_tiled(model, x, 2, tile=0)
    tiled = upscale_tiled(model, x, 2, tile=16, overlap=8)
    assert tiled.shape == whole.shape == (2, 3, 100, 140)
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_jobs_wait_for_a_background_load_and_report_its_progress(sr_hub, files, clip_bytes, caplog):
    caplog.set_level(logging.INFO, logger="gpu_worker")
    sr_hub.throttle_bps = len(sr_hub.repos[SR_REPO].files[SR_FILE]) // 2  # about two seconds
    runtime().loader.start(["upscale"])
    result = run_job(upscale_job(files, clip_bytes, params={"max_frames": 2}))
    assert "error" not in result, result
    assert re.search(rf"downloading model {SR_REPO}: [\d.]+ of 0.9 MB", caplog.text)
    assert result["metrics"]["model_load_s"] > 0.5


def test_a_failed_model_load_fails_jobs_and_asks_for_a_new_worker(sr_hub, files, clip_bytes):
    sr_hub.reported_size[SR_FILE] = 40 * 10**12
    first = run_job(upscale_job(files, clip_bytes))
    assert first["refresh_worker"] is True
    assert first["error_kind"] == "model_unavailable"  # the app marks upscale unavailable
    assert first["error"].startswith("pipeline upscale: model loading failed: not enough space")
    calls = len(sr_hub.requests)
    second = run_job(upscale_job(files, clip_bytes))
    assert second == first and len(sr_hub.requests) == calls  # the same error, at once
    assert "error" not in run_job({"id": "e", "input": {"pipeline": "echo"}})  # echo unaffected


@pytest.mark.parametrize(
    ("setting", "files_in_repo", "expected"),
    [
        ("test-org/broken:model.pth", {"model.pth": b"garbage"}, "could not be read"),
        (
            "test-org/broken:model.safetensors",
            {"model.safetensors": None},
            "is not an architecture spandrel knows",
        ),
        ("just-a-name", {}, "UPSCALE_MODEL='just-a-name': write it as org/repo:file.pth"),
    ],
)
def test_bad_checkpoints_and_settings_say_what_to_fix(
    sr_hub, files, clip_bytes, monkeypatch, setting, files_in_repo, expected
):
    from safetensors.torch import save

    if files_in_repo.get("model.safetensors", b"") is None:
        import torch

        files_in_repo["model.safetensors"] = save({"encoder.w": torch.zeros(2, 2)})
    sr_hub.add_repo("test-org/broken", files_in_repo)
    monkeypatch.setenv("UPSCALE_MODEL", setting)
    reset_runtime()
    result = run_job(upscale_job(files, clip_bytes))
    assert expected in result["error"], result
    assert "/tmp" not in result["error"] and "Errno" not in result["error"]
    # A new worker helps a broken download, not a wrong setting.
    assert result.get("refresh_worker", False) is ("UPSCALE_MODEL" not in expected)
