"""The commands `make run`'s banner prints, typed as printed in a fresh shell (system PATH,
nothing activated), reach the running stack; the banner comes again below Celery's art;
no secret shows on a command line."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from deploy.stack.processes import command_line, descendants
from deploy.stack.services import DevServer
from tests.e2e.test_browser import make_video

ROOT = Path(__file__).resolve().parents[2]


def terminal_env(server: DevServer, home: Path) -> dict[str, str]:
    """A fresh shell's environment: a system PATH, nothing activated, none of the stack's
    settings. The devserver here keeps its state under a test folder, so one variable says
    where (`make run` uses instance/, where the commands look by default)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "DEVSERVER_ENV_FILE": str(server.instance / "devserver.env"),
    }


def run(command: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """``command`` typed in that shell, after the banner's ``cd``."""
    return subprocess.run(
        ["/bin/sh", "-c", f"cd {ROOT} && {command}"],
        cwd=env["HOME"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_the_banner_commands_work_in_a_second_terminal(tmp_path):
    video = make_video(tmp_path / "clip.mp4")
    home = tmp_path / "home"
    home.mkdir()
    server = DevServer(tmp_path)
    try:
        server.wait_for_banner()
        # Printed again once a task worker is up, below Celery's start-up art.
        deadline = time.monotonic() + 120
        while "All up (web, tasks, GPU endpoint):" not in server.log():
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.5)
        log = server.log()
        again = log.rindex("All up (web, tasks, GPU endpoint):")
        assert log.index("The app is up:") < again
        assert re.search(r"celery@\S+ ready\.", log[:again]), "the art comes before the banner"
        banner = log[again:]
        shared = server.instance / "devserver.env"
        assert shared.stat().st_mode & 0o077 == 0, "the stack's environment holds secrets"
        assert f"    cd {ROOT}\n" in banner, banner
        commands = re.findall(r"^    (/\S+/(?:flask|python) .+)$", banner, re.M)
        assert len(commands) == 3, banner
        env = terminal_env(server, home)

        # No secret on any command line of the stack (ps shows them to every user).
        secrets = dict(
            line.split("=", 1)
            for line in (server.instance / "dev-secrets.env").read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        for line in map(command_line, descendants(server.process.pid)):
            for name, value in secrets.items():
                assert value not in line, f"{name} in a command line: {line[:80]}"

        done = run(commands[0].replace("FILE", str(video)), env)
        assert done.returncode == 0, done.stdout + done.stderr
        link = re.search(r"created: (\S+)", done.stdout).group(1)
        assert link.startswith(f"http://127.0.0.1:{server.port}/jobs/"), done.stdout
        assert "done" in done.stdout and "result:" in done.stdout

        health = run(commands[1], env)
        assert health.returncode == 0, health.stdout + health.stderr
        # One line per endpoint the stack serves (``endpoint NAME ...: workers: ...``).
        assert re.search(r"^endpoint \S+.*: workers: ", health.stdout, re.M), health.stdout

        doctor = run(commands[2], env)
        report = doctor.stdout + doctor.stderr
        assert doctor.returncode == 0, report
        for billing in ("balance", "add funds", "negative"):
            assert billing not in report.lower(), report

        # Issue 20: the banner's curl line submits a job as printed, with make run's token.
        curl = re.search(r"^    (curl .+)$", banner, re.M).group(1)
        posted = subprocess.run(
            ["sh", "-c", curl + " -sS"], capture_output=True, text=True, timeout=120, check=False
        )
        job = json.loads(posted.stdout)
        assert job["token_name"] == "development", posted.stdout + posted.stderr
        if not job["terminal"]:
            token = re.search(r"Bearer (\S+?)'", curl).group(1)
            job = requests.get(
                job["urls"]["get"],
                headers={"Authorization": f"Bearer {token}", "Prefer": "wait=60"},
                timeout=90,
            ).json()
        assert job["status"] == "COMPLETED", job

        assert server.interrupt() == 0
        assert not shared.exists(), "the file goes with the stack"
        # With the stack gone the commands say so instead of using a stale environment.
        gone = run(commands[1], env, timeout=60)
        assert gone.returncode != 0
        # The devserver stopped its GPU workers itself: no exit code is explained to the
        # person who pressed Ctrl-C as running out of memory.
        assert "out of memory" not in server.log()
    finally:
        server.close()
