"""Fixtures for the deploy tooling: the RunPod stand-in, the hub stand-in, and a CLI runner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.cli import main
from tests.deploy.ops.runpod_standin import RunPodStandIn
from tests.support.hf_hub import FakeHub

GB = 1_000_000_000
RUNPOD_KEY = "rpa_SECRETKEY_do_not_print_0123456789"

GOOD_SPEC = """
[endpoint]
name = "gpu-jobs"
image = "docker.io/acme/gpu-jobs-worker:2026-11-28"
image_compressed_gb = 8
args = ""
gpu_tiers = ["ADA_48_PRO", "AMPERE_48", "AMPERE_80"]
gpu_count = 1
workers_min = 0
workers_max = 3
idle_timeout_s = 5
scaler = { type = "QUEUE_DELAY", value = 4 }
execution_timeout_s = 1800
expected_job_s = 600
flashboot = true
container_disk_gb = 40

[volume]
name = "gpu-jobs-models"
size_gb = 100
datacenter = "US-TX-3"

[env]
MODEL_DIR = "/runpod-volume/models"
HF_HOME = "/runpod-volume/huggingface"
HF_TOKEN = { from_env = "HF_TOKEN" }
SENTRY_DSN = { runpod_secret = "sentry_dsn" }
"""


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """No test reaches a real RunPod account or the real hub, whatever this shell exports,
    nor reads the repository's endpoint specs unless it points DEPLOY_ENDPOINTS_DIR there."""
    for name in (
        "RUNPOD_API_KEY",
        "RUNPOD_ENDPOINT_ID",
        "RUNPOD_ENDPOINT_IDS",
        "RUNPOD_ENDPOINT_BASE_URL",
        "GPU_PRICE_PER_SECOND",
        "RUNPOD_REST_URL",
        "RUNPOD_GRAPHQL_URL",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # refused at once unless a test sets it
    monkeypatch.setenv("DEPLOY_ENDPOINTS_DIR", str(tmp_path / "no-endpoints"))


@pytest.fixture
def cli(capsys):
    """Run ``python -m deploy ARGS`` in-process; returns exit code, stdout and stderr."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def runpod(monkeypatch):
    """The RunPod stand-in, with the environment pointing the tool at it. Any request or
    response that breaks the published spec fails the test at teardown."""
    with RunPodStandIn(api_key=RUNPOD_KEY) as standin:
        for key, value in standin.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", standin.rest_url)
        monkeypatch.delenv("RUNPOD_ENDPOINT_ID", raising=False)
        monkeypatch.setenv("HF_TOKEN", "hf_SECRETtokenDoNotPrint0123456789")
        yield standin
    assert standin.violations == [], "\n".join(standin.violations)


@pytest.fixture
def hub(monkeypatch):
    with FakeHub() as standin:
        standin.page_size = 2
        standin.gated.add("gated/model")
        standin.add_repo("acme/small", {"config.json": 2_000, "model.safetensors": 3 * GB})
        standin.add_repo(
            "Wan-AI/Wan2.1-T2V-14B",
            {
                "config.json": 1_000,
                "diffusion_pytorch_model-00001.safetensors": 30 * GB,
                "diffusion_pytorch_model-00002.safetensors": 30 * GB,
                "t5/models_t5_umt5-xxl-enc-bf16.pth": 9 * GB,
                "README.md": 5_000,
            },
        )
        monkeypatch.setenv("HF_ENDPOINT", standin.url)
        yield standin


@pytest.fixture
def spec_file(tmp_path: Path):
    """Write a spec (the good one by default, or with text substitutions) and return its path."""

    def write(replace: dict[str, str] | None = None, text: str = GOOD_SPEC) -> Path:
        for old, new in (replace or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        path = tmp_path / "endpoint.toml"
        path.write_text(text)
        return path

    return write
