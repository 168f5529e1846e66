"""``make run`` (``python -m app.devserver``): serves the app, prints the login, and Ctrl-C
stops everything with no process left behind."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from deploy.stack.processes import command_line, descendants, wait_gone
from deploy.stack.services import DevServer


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
    # Generated keys may start with "-"; the endpoint must still take its key as a value.
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "dev-secrets.env").write_text(
        "SECRET_KEY=dev-secret-key-for-this-test-only\n"
        "ADMIN_PASSWORD=-dash-first-password\n"
        "LOCAL_ENDPOINT_API_KEY=-dash-first-endpoint-key\n"
    )
    (tmp_path / "instance" / "dev-secrets.env").chmod(0o600)  # as an earlier run leaves it
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

        # Every part of the stack runs: redis, endpoint, both celery workers, beat, gunicorn.
        tree = descendants(server.process.pid)
        commands = " ".join(command_line(pid) for pid in tree)
        for part in (
            "redis-server",
            "deploy local",
            "worker",
            "--queues webhooks",
            "beat",
            "gunicorn",
        ):
            assert part in commands, f"{part} is not running: {commands}"

        assert server.interrupt() == 0
        left = wait_gone(tree, timeout=10)
        assert not left, f"left behind: {[command_line(pid) for pid in left]}"
    finally:
        server.close()


def test_the_first_make_run_shows_its_install_steps_and_pips_progress():
    """The first ``make run`` installs for minutes: a line per step, and pip not silenced."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make on this machine")
    root = Path(__file__).resolve().parents[2]
    # -n: print the recipe without running it; -B: as if nothing were installed yet.
    recipe = subprocess.run(
        [make, "-n", "-B", ".venv/.installed"], cwd=root, capture_output=True, text=True
    ).stdout.splitlines()
    steps = [line for line in recipe if line.startswith('echo "== ')]
    assert len(steps) >= 2, recipe
    pip = next(line for line in recipe if "pip install" in line)
    assert " -q" not in pip and "--quiet" not in pip, pip
    assert recipe.index(steps[1]) < recipe.index(pip), "the step is named before pip starts"
