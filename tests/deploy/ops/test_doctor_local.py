"""doctor, workers, logs and purge reproduced for real on the local endpoint: real worker
processes that exit 2, crash-loop at start-up, die of a full disk or of OOM, demand beyond
the GPUs (throttled), and an endpoint answering Not Found."""

from __future__ import annotations

import json
import sys

import pytest

from deploy.stack.local_endpoint import local_endpoint

PY = sys.executable
ECHO = {"pipeline": "echo", "params": {}}


@pytest.fixture
def local_cli(cli, monkeypatch):
    """Run the CLI against a local endpoint ``ep`` (key from the environment, as operators do)."""

    def run(ep, *argv):
        monkeypatch.setenv("RUNPOD_API_KEY", ep.api_key)
        monkeypatch.delenv("RUNPOD_REST_URL", raising=False)
        monkeypatch.delenv("RUNPOD_ENDPOINT_ID", raising=False)
        result = cli(*argv, "--local", ep.base_url)
        assert ep.api_key not in result.text
        return result

    return run


def _findings(result):
    return {f["rule"]: f for f in json.loads(result.out)["findings"]}


def _workers_cell(text: str) -> str:
    """The workers column of doctor's table (its last column, so the rest of the line)."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("inQueue"))
    return lines[head + 2][lines[head].index("workers") :].strip()


def _crash_loop(ep):
    return ep.wait_for(lambda: ep.workers()["crashLoop"]["active"], 45, what="a crash loop")


@pytest.mark.timeout(90)
def test_worker_command_that_exits_2(tmp_path, local_cli):
    with local_endpoint(
        tmp_path, worker_command=f"{PY} /nonexistent/handler.py", crash_loop_threshold=2
    ) as ep:
        ep.api().run(ECHO)
        _crash_loop(ep)
        result = local_cli(ep, "doctor", "--json")
        assert result.code == 1
        finding = _findings(result)["missing-handler"]
        assert "exit 2" in finding["message"]
        assert "No such file or directory" in finding["message"]  # the log tail
        assert "CMD" in finding["fix"]
        text = local_cli(ep, "doctor")
        assert "[error] missing-handler" in text.out and "last log lines" in text.out


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("code", "rule", "words"),
    [
        ("print('loading weights'); raise SystemExit(1)", "crash-loop", "Python exception"),
        (
            "import os, signal; print('OSError: [Errno 28] No space left on device', flush=True); "
            "os.kill(os.getpid(), signal.SIGSEGV)",
            "disk-full",
            "disk filled up",
        ),
        (
            "import os, signal; print('loading 80 GB model', flush=True); "
            "os.kill(os.getpid(), signal.SIGKILL)",
            "out-of-memory",
            "out of memory",
        ),
    ],
    ids=["exit-1", "exit-139", "exit-137"],
)
def test_crash_looping_start_up(tmp_path, local_cli, code, rule, words):
    command = f'{PY} -c "{code}"'
    with local_endpoint(tmp_path, worker_command=command, crash_loop_threshold=2) as ep:
        ep.api().run(ECHO)
        _crash_loop(ep)
        result = local_cli(ep, "doctor", "--json")
        assert result.code == 1
        findings = _findings(result)
        assert rule in findings, findings
        assert "crash loop" in findings[rule]["message"]
        assert words in findings[rule]["message"]
        logs = local_cli(ep, "logs", "--lines", "5")
        assert logs.code == 0
        assert ("loading" in logs.out) or ("No space" in logs.out)


@pytest.mark.timeout(90)
def test_demand_beyond_the_gpus_is_throttled_then_purged(tmp_path, local_cli):
    # One fake GPU, three jobs wanting three workers; the worker never reaches its handler.
    sleeper = f'{PY} -c "import time; time.sleep(60)"'
    with local_endpoint(
        tmp_path,
        worker_command=sleeper,
        gpus="0",
        workers_max=3,
        scaler="REQUEST_COUNT",
        scaler_value=1,
    ) as ep:
        api = ep.api()
        for _ in range(3):
            api.run(ECHO)
        ep.wait_for(lambda: ep.workers()["summary"]["throttled"] >= 1, 30, what="throttled")
        result = local_cli(ep, "doctor", "--json")
        assert result.code == 1
        findings = _findings(result)
        assert "throttled" in findings and "3 job(s) wait" in findings["throttled"]["message"]
        assert "purge" in findings["stale-queue"]["fix"]
        workers = json.loads(local_cli(ep, "workers", "--json").out)
        assert workers["summary"]["throttled"] >= 1
        purge = local_cli(ep, "purge")
        assert purge.code == 0 and "removed 3" in purge.out
        assert ep.api().health()["jobs"]["inQueue"] == 0


@pytest.mark.timeout(60)
def test_endpoint_answering_not_found(tmp_path, local_cli):
    with local_endpoint(tmp_path, disabled=True) as ep:
        result = local_cli(ep, "doctor", "--json")
        assert result.code == 1
        finding = _findings(result)["endpoint-not-found"]
        # A local endpoint has no account: no RunPod billing advice.
        for billing in ("balance", "funds", "recreate"):
            assert billing not in finding["message"] + finding["fix"], finding
        assert "make run" in finding["fix"]


@pytest.mark.timeout(60)
def test_doctor_takes_the_url_make_run_prints(tmp_path, cli, monkeypatch):
    with local_endpoint(tmp_path) as ep:
        monkeypatch.setenv("RUNPOD_API_KEY", ep.api_key)
        monkeypatch.delenv("RUNPOD_ENDPOINT_ID", raising=False)
        monkeypatch.delenv("RUNPOD_REST_URL", raising=False)
        result = cli("doctor", "--local", f"{ep.base_url}/{ep.endpoint_id}")
        assert result.code == 0, result.text
        assert "no problems found" in result.out
        wrong = cli("doctor", "--json", "--local", f"{ep.base_url}/not-this-one")
        assert wrong.code == 1
        finding = _findings(wrong)["endpoint-not-found"]
        assert "not-this-one" in finding["message"] and "funds" not in finding["fix"]


@pytest.mark.timeout(60)
def test_healthy_local_endpoint_and_env_target(tmp_path, cli, monkeypatch):
    with local_endpoint(tmp_path) as ep:
        # With no worker yet the workers column says so instead of staying empty.
        monkeypatch.setenv("RUNPOD_API_KEY", ep.api_key)
        fresh = cli("doctor", "--local", f"{ep.base_url}/{ep.endpoint_id}")
        assert _workers_cell(fresh.out) == "none", fresh.out
        job = ep.api().run(ECHO)
        ep.wait_status(job["id"])
        monkeypatch.setenv("RUNPOD_API_KEY", ep.api_key)
        monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", ep.base_url)
        monkeypatch.setenv("RUNPOD_ENDPOINT_ID", ep.endpoint_id)
        monkeypatch.delenv("RUNPOD_REST_URL", raising=False)
        result = cli("doctor")
        assert result.code == 0, result.text
        assert "no problems found" in result.out
        assert ep.api_key not in result.text
        # The worker that ran the job waits out its idle timeout: the column counts it.
        assert _workers_cell(result.out) in ("idle 1", "none"), result.out


@pytest.mark.timeout(60)
def test_jobs_queued_while_a_worker_is_stuck_before_its_handler(tmp_path, local_cli):
    slow_start = (
        f"{PY} -c \"print('downloading 28 GB of weights', flush=True); "
        f'import time; time.sleep(60)"'
    )
    with local_endpoint(tmp_path, worker_command=slow_start) as ep:
        ep.api().run(ECHO)
        ep.wait_for(lambda: ep.workers()["workers"], 20, what="a worker")
        result = local_cli(ep, "doctor", "--json", "--startup-grace", "0")
        assert result.code == 1
        finding = _findings(result)["startup-before-handler"]
        assert "runpod.serverless.start()" in finding["message"]
        logs = local_cli(ep, "logs")
        assert "downloading 28 GB" in logs.out
