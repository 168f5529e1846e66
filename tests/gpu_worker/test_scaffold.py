"""``python -m gpu_worker.pipelines new NAME`` writes a pipeline that runs as written, for
video and images, and registers it; the catalogue the app reads then offers it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from gpu_worker import pipelines
from gpu_worker.handler import run_job
from gpu_worker.pipelines import scaffold
from tests.gpu_worker.media import png_bytes, read_clip

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def made(tmp_path, monkeypatch):
    """A scaffolded ``my_model`` in a copy of the pipelines folder, importable and registered."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    shutil.copy(Path(pipelines.__file__), folder / "__init__.py")
    lines = scaffold.create("my_model", ("video", "image"), folder)
    spec = importlib.util.spec_from_file_location("scaffolded_my_model", folder / "my_model.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "scaffolded_my_model", module)
    spec.loader.exec_module(module)
    monkeypatch.setitem(pipelines._MODULES, "my_model", "scaffolded_my_model")
    return folder, lines


def test_the_scaffold_registers_a_declared_pipeline(made):
    folder, lines = made
    assert (
        '    "my_model": "gpu_worker.pipelines.my_model",\n' in (folder / "__init__.py").read_text()
    )
    assert "PIPELINES=video_enhance,upscale,echo,my_model make run" in lines[-1]
    declared = pipelines.catalogue()["pipelines"]["my_model"]
    Draft202012Validator.check_schema(declared["params"])
    assert declared["inputs"] == [{"name": "file", "kinds": ["video", "image"], "required": True}]
    assert declared["output"] == {"video": "video/mp4", "image": "same"}


def test_the_scaffolded_pipeline_runs_on_a_video_and_an_image(
    made, worker_env, files, clip_bytes, tmp_path
):
    files.files["clip.mp4"] = clip_bytes
    files.files["photo.png"] = png_bytes(8, 6)
    for name in ("clip.mp4", "photo.png"):
        job = {
            "id": name,
            "input": {
                "pipeline": "my_model",
                "params": {"strength": 1.0},
                "inputs": {"file": files.url(f"files/{name}?sig=x")},
                "output": {"put_url": files.url(f"upload/{name}?sig=x")},
            },
        }
        result = run_job(job)
        assert "error" not in result, result
    (tmp_path / "out.mp4").write_bytes(files.uploads["clip.mp4"])
    assert read_clip(tmp_path / "out.mp4")["frames"] == 12
    assert files.uploads["photo.png"].startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("name", "kinds", "message"),
    [
        ("My-Model", "video", "use a lower_case name"),
        ("echo", "video", "exists already"),
        ("x", "audio", "give video, image or video,image"),
    ],
)
def test_bad_names_and_kinds_are_refused_and_write_nothing(name, kinds, message):
    folder = Path(pipelines.__file__).parent
    before = sorted(p.name for p in folder.glob("*.py"))
    done = subprocess.run(
        [sys.executable, "-m", "gpu_worker.pipelines", "new", name, "--kinds", kinds],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert sorted(p.name for p in folder.glob("*.py")) == before
