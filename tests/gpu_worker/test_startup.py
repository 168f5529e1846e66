"""What a worker imports before its first echo job: the runpod SDK and the worker, nothing a
pipeline brings (torch, PyAV, numpy...) and nothing only the SDK's command line uses
(paramiko). A cold ``echo`` job is mostly these imports (issue 17; bench endpoint's
cold_start measures the time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "av", "numpy", "spandrel", "huggingface_hub", "boto3", "sentry_sdk", "paramiko")

CHILD = f"""
import json, sys
import gpu_worker.__main__ as main
main.prepare()
from gpu_worker.handler import run_job
result = run_job({{"id": "cold", "input": {{"pipeline": "echo", "params": {{"x": 1}}}}}})
loaded = sorted(set({HEAVY!r}) & set(sys.modules))
import runpod.cli.groups.ssh.functions as ssh  # the SDK's ssh command still finds paramiko
print(json.dumps({{"echo": result.get("echo"), "loaded": loaded,
                   "rsa": ssh.paramiko.RSAKey.__name__}}))
"""


def test_a_cold_echo_job_imports_nothing_a_pipeline_or_the_sdk_cli_needs(tmp_path):
    env = dict(
        os.environ,
        WORK_DIR=str(tmp_path),
        MODEL_DIR=str(tmp_path / "models"),
        RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true",
        RUNPOD_SKIP_GPU_CHECK="true",
    )
    env.pop("SENTRY_DSN", None)
    env.pop("PRELOAD_PIPELINES", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"echo": {"x": 1}, "loaded": [], "rsa": "RSAKey"}
