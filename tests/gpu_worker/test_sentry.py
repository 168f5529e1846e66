"""Sentry in the worker: on with SENTRY_DSN, errors reported, signed URLs kept out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gpu_worker.file_server import FileServer
from tests.support.sentry_sink import SentrySink

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_a_crashing_job_reaches_sentry_without_its_signed_urls(tmp_path):
    with SentrySink() as sink:
        with FileServer() as files:
            files.files["in.bin"] = b"payload"
            payload = {
                "pipeline": "echo",
                "params": {"fail": "boom"},
                "inputs": {"data": files.url("files/in.bin?sig=SECRETSIG")},
            }
            env = dict(
                os.environ,
                SENTRY_DSN=sink.dsn,
                WORK_DIR=str(tmp_path / "w"),
                MODEL_DIR=str(tmp_path / "m"),
            )
            env.pop("RUNPOD_WEBHOOK_GET_JOB", None)
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gpu_worker",
                    "--test_input",
                    json.dumps({"input": payload}),
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=50,
            )
        events = sink.raw()
    assert done.returncode == 1
    assert "pipeline echo failed: EchoError: boom" in done.stdout
    assert b"EchoError" in events and b"boom" in events
    assert b'"component":"gpu_worker"' in events.replace(b" ", b"")
    assert b"SECRETSIG" not in events
