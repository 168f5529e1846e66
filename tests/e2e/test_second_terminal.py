"""The commands `make run`'s banner prints, typed in a second terminal in the checkout,
reach the running stack with no extra setup."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.stack.services import DevServer
from tests.e2e.test_browser import make_video

ROOT = Path(__file__).resolve().parents[2]


def terminal_env(server: DevServer) -> dict[str, str]:
    """A fresh shell's environment: none of the stack's settings. The devserver here keeps
    its state under a test folder, so the one variable says where (`make run` uses
    instance/, where the commands look by default)."""
    env = {k: v for k, v in os.environ.items() if k not in DevServer.STACK_SETTINGS}
    for name in ("APP_ENV", "SECRET_KEY", "STORAGE_DIR", "PUBLIC_BASE_URL", "PIPELINES"):
        env.pop(name, None)
    env["DEVSERVER_ENV_FILE"] = str(server.instance / "devserver.env")
    return env


def run(
    command: list[str], env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    if command[0] == "flask":
        command = [str(bin_dir / "flask"), *command[1:]]
    elif command[0] == "python":
        command = [sys.executable, *command[1:]]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_the_banner_commands_work_in_a_second_terminal(tmp_path):
    video = make_video(tmp_path / "clip.mp4")
    server = DevServer(tmp_path)
    try:
        server.wait_for_banner()
        banner = server.log()
        shared = server.instance / "devserver.env"
        assert shared.stat().st_mode & 0o077 == 0, "the stack's environment holds secrets"
        commands = re.findall(r"^    ((?:flask|python) .+)$", banner, re.M)
        assert len(commands) == 3, banner
        env = terminal_env(server)

        submit = commands[0].replace("FILE", str(video)).split()
        done = run(submit, env)
        assert done.returncode == 0, done.stdout + done.stderr
        link = re.search(r"created: (\S+)", done.stdout).group(1)
        assert link.startswith(f"http://127.0.0.1:{server.port}/jobs/"), done.stdout
        assert "done" in done.stdout and "result:" in done.stdout

        health = run(commands[1].split(), env)
        assert health.returncode == 0, health.stdout + health.stderr
        for name in ("video", "light"):  # make run serves two endpoints (issue 18)
            assert f"endpoint {name} ({name}): workers:" in health.stdout, health.stdout

        doctor = run(commands[2].split(), env)
        assert "/v2/video" in commands[2]
        report = doctor.stdout + doctor.stderr
        assert doctor.returncode == 0, report
        for billing in ("balance", "add funds", "negative"):
            assert billing not in report.lower(), report

        assert server.interrupt() == 0
        assert not shared.exists(), "the file goes with the stack"
        # With the stack gone the commands say so instead of using a stale environment.
        gone = run(commands[1].split(), env, timeout=60)
        assert gone.returncode != 0
    finally:
        server.close()
