"""Fixtures for the GPU worker's tests: a fake hub, a file server, a tiny clip, clean env."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.gpu_worker.file_server import FileServer
from tests.gpu_worker.media import make_clip
from tests.support.hf_hub import FakeHub

SR_REPO = "test-org/tiny-esrgan"
SR_FILE = "RealESRGAN_x2.pth"
# UPSCALE_MODEL for the fake hub's tiny checkpoint in Real-ESRGAN x2's layout.
SR_MODEL = f"{SR_REPO}:{SR_FILE}"


# A plain weights repo (a config and a safetensors file) for the model cache's tests.
WEIGHTS_REPO = "test-org/weights"


def weights_repo_files() -> dict[str, bytes]:
    return {
        "config.json": json.dumps({"scale": 2}).encode(),
        "model.safetensors": sample_bytes(300_000),
        "README.md": b"# test weights\n",
    }


def sr_repo_files() -> dict[str, bytes]:
    """A hub repo like ai-forever/Real-ESRGAN: checkpoints of several scales and a README."""
    from bench.sr_weights import realesrgan_x2_pth

    return {SR_FILE: realesrgan_x2_pth(), "RealESRGAN_x4.pth": b"not downloaded", "README.md": b"#"}


@pytest.fixture
def worker_env(monkeypatch, tmp_path) -> Iterator[dict[str, str]]:
    """A clean worker environment (MODEL_DIR, WORK_DIR under tmp_path), runtime reset."""
    from gpu_worker.handler import reset_runtime

    env = {
        "MODEL_DIR": str(tmp_path / "volume" / "models"),
        "HF_HOME": str(tmp_path / "volume" / "huggingface"),
        "WORK_DIR": str(tmp_path / "work"),
        "TRANSFER_BACKOFF_S": "0.05",
        "TRANSFER_DEADLINE_S": "0",  # fail after TRANSFER_ATTEMPTS: no outage to wait out
        "DOWNLOAD_READ_TIMEOUT_S": "5",
        "PROGRESS_INTERVAL_S": "0",
    }
    for name in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "PRELOAD_PIPELINES",
        "SENTRY_DSN",
        "RUNPOD_WEBHOOK_GET_JOB",
        "MAX_INPUT_BYTES",
        "INLINE_OUTPUT_MAX_BYTES",
        "UPSCALE_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_runtime()
    yield env
    reset_runtime()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_repo(SR_REPO, sr_repo_files())
        server.add_repo(WEIGHTS_REPO, weights_repo_files())
        yield server


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


@pytest.fixture(scope="session")
def clip_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    return make_clip(path).read_bytes()


def sample_bytes(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]
