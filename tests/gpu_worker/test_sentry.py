"""Sentry in the worker: on with SENTRY_DSN, errors reported, signed URLs kept out."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.gpu_worker.file_server import FileServer

ROOT = Path(__file__).resolve().parents[2]


class _Sentry(BaseHTTPRequestHandler):
    bodies: list[bytes]

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli

            body = brotli.decompress(body)
        self.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


@pytest.mark.timeout(60)
def test_a_crashing_job_reaches_sentry_without_its_signed_urls(tmp_path):
    bodies: list[bytes] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("S", (_Sentry,), {"bodies": bodies}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dsn = f"http://publickey@127.0.0.1:{server.server_address[1]}/42"
    try:
        with FileServer() as files:
            files.files["in.bin"] = b"payload"
            payload = {
                "pipeline": "echo",
                "params": {"fail": "boom"},
                "inputs": {"data": files.url("files/in.bin?sig=SECRETSIG")},
            }
            env = dict(
                os.environ,
                SENTRY_DSN=dsn,
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
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1
    assert "pipeline echo failed: EchoError: boom" in done.stdout
    events = b"\n".join(bodies)
    assert b"EchoError" in events and b"boom" in events
    assert b'"component":"gpu_worker"' in events.replace(b" ", b"")
    assert b"SECRETSIG" not in events
