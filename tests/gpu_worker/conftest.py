"""Fixtures for the GPU worker's tests: a fake hub, a file server, a tiny clip, clean env."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.gpu_worker.file_server import FileServer
from tests.gpu_worker.media import make_clip
from tests.support.hf_hub import FakeHub

SR_REPO = "test-org/espcn-x2"


def espcn_repo_files(scale: int = 2) -> dict[str, bytes]:
    """A real ESPCN weights repo: config.json and model.safetensors, made here."""
    import torch
    from safetensors.torch import save

    from gpu_worker.pipelines.sr_learned import build_network

    torch.manual_seed(0)
    net = build_network(scale, (16, 8))
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    return {
        "config.json": json.dumps({"scale": scale, "features": [16, 8]}).encode(),
        "model.safetensors": save(state),
        "README.md": b"# test weights\n",
    }


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
        server.add_repo(SR_REPO, espcn_repo_files())
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
