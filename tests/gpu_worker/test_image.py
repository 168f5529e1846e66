"""Dockerfile.gpu, checked statically (no Docker engine here), and the worker's entry point."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.gpu"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def env_values() -> dict[str, str]:
    values = {}
    for kind, args in instructions():
        if kind == "ENV":
            for token in shlex.split(args):
                name, _, value = token.partition("=")
                values[name] = value
    return values


def test_every_copy_source_exists():
    copies = [args for kind, args in instructions() if kind == "COPY"]
    assert copies
    for args in copies:
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_cmd_is_the_worker_module_and_nothing_runs_at_start():
    cmds = [args for kind, args in instructions() if kind in ("CMD", "ENTRYPOINT")]
    assert cmds == ['["python", "-u", "-m", "gpu_worker"]']
    assert json.loads(cmds[0]) == ["python", "-u", "-m", "gpu_worker"]
    runs = " ".join(args for kind, args in instructions() if kind == "RUN")
    # Dependencies installed at build time, pinned by the worker's requirements (constraints).
    assert "-c gpu_worker/requirements.txt" in runs
    assert "git clone" not in DOCKERFILE.read_text()


def test_models_go_to_the_network_volume_and_no_secret_is_baked_in():
    env = env_values()
    assert env["MODEL_DIR"] == "/runpod-volume/models"
    assert env["HF_HOME"] == "/runpod-volume/huggingface"
    text = DOCKERFILE.read_text()
    assert "/workspace" not in text
    assert not re.search(r"hf_[A-Za-z0-9]{20,}|ghp_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}", text)
    for name in env:
        assert not re.search(r"TOKEN|SECRET|PASSWORD|API_KEY|DSN", name), name
    for kind, args in instructions():
        if kind == "ARG":
            assert not re.search(r"(?i)token|secret|password|key", args), args


def test_the_cmd_module_imports_from_what_the_image_copies(tmp_path):
    """Lay out the image's WORKDIR from the COPY lines and import the entry point there."""
    workdir = tmp_path / "image"
    for kind, args in instructions():
        if kind != "COPY":
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        *sources, dest = parts
        for source in sources:
            target = workdir / dest / Path(source).name if dest.endswith("/") else workdir / dest
            src = ROOT / source
            if src.is_dir():
                shutil.copytree(
                    src, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = (
        "import sys, gpu_worker.__main__ as m; assert callable(m.main); "
        "assert 'torch' not in sys.modules, 'torch on the start-up path'; "
        "print(m.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(workdir))


def test_the_handler_module_does_not_import_torch():
    code = "import sys, gpu_worker.handler; print(sorted({'torch', 'av'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.timeout(120)
def test_one_shot_mode_runs_a_job_and_reports_bad_input(tmp_path):
    from tests.gpu_worker.media import make_clip

    env = dict(os.environ, WORK_DIR=str(tmp_path / "work"), MODEL_DIR=str(tmp_path / "m"))
    env.pop("RUNPOD_WEBHOOK_GET_JOB", None)

    def one_shot(payload: dict) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "gpu_worker", "--test_input", json.dumps({"input": payload})],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )

    ok = one_shot({"pipeline": "echo", "params": {"x": 1}})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Job local_test completed successfully." in ok.stdout

    bad = one_shot({"pipeline": "video_enhance", "inputs": {"video": "ftp://h/clip.mp4"}})
    assert bad.returncode == 1
    assert "inputs.video: only http and https URLs are accepted, got ftp" in bad.stdout

    from tests.gpu_worker.file_server import FileServer

    clip = make_clip(tmp_path / "clip.mp4").read_bytes()
    with FileServer() as files:
        files.files["clip.mp4"] = clip
        video = one_shot(
            {
                "pipeline": "video_enhance",
                "params": {"max_frames": 4},
                "inputs": {"video": files.url("files/clip.mp4")},
            }
        )
    assert video.returncode == 0, video.stdout + video.stderr
    assert "'content_type': 'video/mp4'" in video.stdout and "'frames': 4" in video.stdout
    assert not list((tmp_path / "work").glob("gpu-job-*"))


def test_a_workspace_model_dir_is_flagged_loudly_at_start(tmp_path):
    env = dict(
        os.environ, MODEL_DIR="/workspace/models", RUNPOD_POD_ID="w-1", WORK_DIR=str(tmp_path)
    )
    env.pop("RUNPOD_WEBHOOK_GET_JOB", None)
    done = subprocess.run(
        [sys.executable, "-m", "gpu_worker", "--test_input", '{"input": {"pipeline": "echo"}}'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ERROR gpu_worker: !!!" in done.stderr
    assert "MODEL_DIR=/workspace/models points at /workspace: on RunPod Serverless" in done.stderr


def test_the_worker_benchmarks_import_nothing_from_the_tests():
    """``python -m bench.gpu_check`` runs on a GPU box with the worker's requirements and the
    repository, and ``bench worker`` beside it: neither reaches into tests/ (issue 17)."""
    for name in ("gpu_check.py", "worker.py", "sr_weights.py"):
        text = (ROOT / "bench" / name).read_text()
        assert "from tests" not in text and "import tests" not in text, name
