"""The worker's memory ceiling (MEMORY_LIMIT_BYTES): a job that needs more fails with a
message saying so, and the worker process lives on (issue 16, item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gpu_worker.handler import run_job
from gpu_worker.memory import over_ceiling_message
from tests.gpu_worker.media import make_clip

ROOT = Path(__file__).resolve().parents[2]

# The worker's own start-up (which sets RLIMIT_DATA on a host without CUDA), then one job.
CHILD = """
import json, sys
from gpu_worker.__main__ import prepare
from gpu_worker.handler import run_job
prepare()
job = {"id": "m", "input": {"pipeline": "video_enhance", "params": {"batch_size": 32},
       "inputs": {"video": sys.argv[1]}, "output": {"put_url": sys.argv[2]}}}
first = run_job(job)
job["input"]["params"] = {"batch_size": 1, "max_frames": 2}
print(json.dumps({"first": first.get("error"), "then": run_job(job).get("error")}))
"""


def test_a_job_over_the_ceiling_fails_with_a_message_and_the_worker_takes_the_next(
    worker_env, files, tmp_path
):
    """640×480, 32 frames a batch, 2x: about 1.3 GB at its peak on CPU, under a 900 MB
    ceiling. The kernel refuses the allocation (RLIMIT_DATA) instead of killing the process."""
    files.files["vga.mp4"] = make_clip(
        tmp_path / "vga.mp4", 640, 480, frames=32, audio=False
    ).read_bytes()
    ceiling = 900_000_000
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        TORCH_DEVICE="cpu",
        MEMORY_LIMIT_BYTES=str(ceiling),
        RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true",
        RUNPOD_SKIP_GPU_CHECK="true",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            files.url("files/vga.mp4?sig=a"),
            files.url("upload/out.mp4?sig=a"),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert errors["first"] == over_ceiling_message(ceiling)
    assert errors["first"].startswith("the job needed more memory than this worker's 858 MiB")
    assert errors["then"] is None  # a small job afterwards runs in the same process


def test_where_no_rlimit_is_set_the_watchdog_stops_the_job_at_its_next_batch(
    worker_env, files, clip_bytes, monkeypatch
):
    """On CUDA hosts only the watchdog guards (RLIMIT_DATA is not set there); this process
    is already over a 10 MB ceiling, so the job stops before its first batch."""
    monkeypatch.setenv("MEMORY_LIMIT_BYTES", str(10 * 2**20))
    files.files["clip.mp4"] = clip_bytes
    result = run_job(
        {
            "id": "w",
            "input": {
                "pipeline": "video_enhance",
                "inputs": {"video": files.url("files/clip.mp4?sig=a")},
            },
        }
    )
    assert result == {"error": over_ceiling_message(10 * 2**20)}
    assert "10 MiB ceiling (MEMORY_LIMIT_BYTES)" in result["error"]
