"""Static checks of the Procfiles and Dockerfile.web: what production would run exists."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

from honcho.environ import parse_procfile

from app.queue import DELIVERIES_QUEUE
from deploy.stack.processes import ROOT

WEB_APP = "app:create_app()"
CELERY_APP = "tasks.worker:celery_app"


def _procfile(name: str) -> dict[str, str]:
    return dict(parse_procfile((ROOT / name).read_text()).processes)


def _dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile.web").read_text()
    text = re.sub(r"\\\n", " ", text)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_procfile_runs_web_worker_and_beat_on_the_contract_apps():
    processes = _procfile("Procfile")
    # Issue 20: ``deliveries`` serves only the webhooks queue (app/queue.py), in threads.
    assert set(processes) == {"web", "worker", "deliveries", "beat"}
    assert "gunicorn" in processes["web"] and f"'{WEB_APP}'" in processes["web"]
    assert "${PORT" in processes["web"], "the platform's PORT decides where web listens"
    assert "app.migrate" in processes["web"], "tables are migrated before web serves"
    for name in ("worker", "beat"):
        argv = shlex.split(processes[name].removeprefix("exec "))
        assert argv[:4] == ["celery", "-A", CELERY_APP, name], processes[name]
    deliveries = shlex.split(processes["deliveries"].removeprefix("exec "))
    assert deliveries[:4] == ["celery", "-A", CELERY_APP, "worker"], processes["deliveries"]
    assert f"--queues {DELIVERIES_QUEUE}" in processes["deliveries"]
    assert "--queues" not in processes["worker"], "the jobs' worker takes the default queue"


def test_procfile_dev_adds_redis_and_endpoint_to_the_same_apps():
    dev = _procfile("Procfile.dev")
    assert set(dev) == {"redis", "endpoint", "web", "worker", "deliveries", "beat"}
    assert f"--queues {DELIVERIES_QUEUE}" in dev["deliveries"]
    assert "maxmemory-policy noeviction" in dev["redis"], "Celery's keys must never be evicted"
    assert "python -m deploy local" in dev["endpoint"]
    assert "$LOCAL_ENDPOINT_ARGS" in dev["endpoint"], "app.devserver names the endpoints"
    assert f"'{WEB_APP}'" in dev["web"] and "127.0.0.1" in dev["web"]
    for name in ("worker", "beat"):
        assert f"celery -A {CELERY_APP} {name}" in dev[name]


def test_the_apps_the_procfile_names_exist():
    # Imported in a child with a production-like environment, as gunicorn and celery would.
    program = (
        "import importlib, json;"
        "from app import create_app;"
        "from tasks.worker import celery_app;"
        "print(json.dumps({'web': callable(create_app),"
        " 'celery': type(celery_app).__module__}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "APP_ENV": "test", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"web": True, "celery": "celery.app.base"}


def test_dockerfile_web_builds_the_web_side_only_and_runs_the_procfile_web_command():
    steps = _dockerfile()
    base = [arg for op, arg in steps if op == "FROM"]
    assert len(base) == 1 and base[0].startswith("python:3.11"), base

    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert "pip install -r requirements.txt" in runs
    assert "gpu_worker/requirements.txt" not in runs, "torch belongs in Dockerfile.gpu"

    copied = []
    for op, arg in steps:
        if op == "COPY":
            *sources, _dest = shlex.split(arg)
            copied += sources
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
    # Everything the web, worker and beat import at run time is in the image.
    for package in ("app", "tasks", "deploy/__init__.py", "deploy/runpod"):
        assert package in copied, package
    assert "gpu_worker" not in copied

    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"

    cmd = json.loads([arg for op, arg in steps if op == "CMD"][-1])
    assert cmd[:2] == ["sh", "-c"]
    assert cmd[2] == _procfile("Procfile")["web"], "CMD and the Procfile's web must agree"
    expose = [arg for op, arg in steps if op == "EXPOSE"]
    assert expose == ["8000"] and "${PORT:-8000}" in cmd[2]


def test_requirements_pin_what_the_image_runs():
    lines = [
        line.split("#", 1)[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
    ]
    for pin in (
        "gunicorn==",
        "celery[redis]==",
        "flask==",
        "sentry-sdk[flask,celery]==",
        "honcho==",
    ):
        assert any(line.startswith(pin) for line in lines), f"requirements.txt needs {pin}..."
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".git", "instance"):
        assert path in dockerignore, f"{path} must stay out of the build context"


def test_the_web_image_carries_the_endpoint_specs_but_no_operator_tooling():
    """The app routes each pipeline by deploy/endpoints/<name>.toml; deploy/ops and
    deploy/local are not part of what the web tier runs."""
    copied = [arg.split()[:-1] for op, arg in _dockerfile() if op == "COPY"]
    sources = [src for args in copied for src in args]
    assert "deploy/endpoints" in sources
    assert not [s for s in sources if s in ("deploy", "deploy/ops", "deploy/local", ".")]
