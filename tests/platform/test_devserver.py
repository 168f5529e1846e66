"""``make run`` (``python -m app.devserver``): serves the app, prints the login, and Ctrl-C
stops everything with no process left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.net import free_port
from tests.support.services import ROOT, alive_pids, descendants, wait_gone


class DevServer:
    def __init__(self, tmp_path: Path, *extra: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.instance = tmp_path / "instance"
        self.log_path = tmp_path / "devserver.log"
        child_env = {k: v for k, v in os.environ.items() if not _stack_setting(k)}
        child_env.update(env or {})
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.devserver", "--port", str(self.port)]
                + ["--instance-dir", str(self.instance), *extra],
                cwd=ROOT,
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own group, as in a terminal: SIGINT reaches it and not pytest.
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_banner(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"password: (\S+)", self.log())
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"devserver exited early:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        raise AssertionError(f"no banner after {timeout}s:\n{self.log()[-4000:]}")

    def interrupt(self, timeout: float = 45.0) -> int:
        """Ctrl-C: SIGINT to the devserver's process group, as a terminal sends it."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"Ctrl-C did not stop it in {timeout}s:\n{self.log()[-4000:]}"
            ) from None

    def close(self) -> None:
        if self.process.poll() is None:
            with_children = descendants(self.process.pid)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            for pid in alive_pids(with_children):
                os.kill(pid, signal.SIGKILL)


def _stack_setting(name: str) -> bool:
    # The devserver must bring its own Redis and endpoint whatever the caller's shell holds.
    return name in {"REDIS_URL", "RUNPOD_API_KEY", "RUNPOD_ENDPOINT_ID", "DATABASE_URL", "PORT"}


@pytest.mark.timeout(60)
def test_ctrl_c_stops_even_a_process_that_left_its_group(tmp_path):
    procfile = tmp_path / "Procfile.test"
    procfile.write_text(
        'web: exec python -m http.server --bind 127.0.0.1 "$WEB_PORT"\n'
        "worker: sh -c 'sleep 600 & sleep 600 & wait'\n"
        # setsid puts sleep in its own session, out of reach of honcho's killpg; it still
        # holds honcho's output pipe, which used to keep honcho waiting forever.
        "beat: setsid sleep 600\n"
    )
    server = DevServer(tmp_path, "--procfile", str(procfile))
    try:
        server.wait_for_banner(timeout=60)
        tree = descendants(server.process.pid)
        assert len(tree) >= 6, tree
        assert server.interrupt(timeout=30) == 0
        assert not wait_gone(tree, timeout=5), server.log()[-3000:]
    finally:
        server.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_make_run_serves_the_app_and_ctrl_c_leaves_nothing(tmp_path):
    server = DevServer(tmp_path)
    try:
        password = server.wait_for_banner()
        secrets_file = server.instance / "dev-secrets.env"
        assert f"ADMIN_PASSWORD={password}" in secrets_file.read_text()
        assert secrets_file.stat().st_mode & 0o077 == 0, "dev secrets must be private"
        assert (server.instance / "app.db").is_file(), "tables are created before start"

        page = requests.get(f"http://127.0.0.1:{server.port}/", timeout=30)
        assert page.status_code == 200
        assert "<form" in page.text

        # Every part of the stack runs: redis, endpoint, celery worker, beat, gunicorn.
        tree = descendants(server.process.pid)
        commands = " ".join(_cmdline(pid) for pid in tree)
        for part in ("redis-server", "deploy local", "worker", "beat", "gunicorn"):
            assert part in commands, f"{part} is not running: {commands}"

        assert server.interrupt() == 0
        left = wait_gone(tree, timeout=10)
        assert not left, f"left behind: {[_cmdline(pid) for pid in left]}"
    finally:
        server.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
