"""doctor, workers, logs, purge and cancel against the RunPod stand-in (REST v2 workers,
logs and releases, the job API's health, and the GraphQL balance)."""

from __future__ import annotations

import json

import pytest

from tests.deploy.ops.conftest import RUNPOD_KEY


@pytest.fixture
def deployed(cli, runpod, spec_file, monkeypatch):
    """An applied spec with a single GPU tier pinned to a volume; returns the endpoint id."""
    path = spec_file({'["ADA_48_PRO", "AMPERE_48", "AMPERE_80"]': '["AMPERE_48"]'})
    monkeypatch.chdir(path.parent)  # doctor finds the endpoint by the spec's name
    assert cli("apply", "--spec", str(path), "--offline").code == 0
    (eid,) = runpod.endpoints
    return eid


def _doctor(cli, *extra):
    result = cli("doctor", "--spec", "endpoint.toml", "--json", *extra)
    assert RUNPOD_KEY not in result.text
    return result, {f["rule"]: f for f in json.loads(result.out)["findings"]}


def test_healthy_endpoint(cli, runpod, deployed):
    runpod.add_worker(deployed, "IDLE")
    runpod.balance["currentSpendPerHr"] = 0
    result, findings = _doctor(cli)
    assert result.code == 0, result.out
    assert findings == {}


def test_throttled_workers_mean_no_capacity(cli, runpod, deployed):
    runpod.add_worker(deployed, "THROTTLED")
    runpod.job_counts[deployed] = {
        "completed": 0,
        "failed": 0,
        "inProgress": 0,
        "inQueue": 4,
        "retried": 0,
    }
    result, findings = _doctor(cli)
    assert result.code == 1
    fix = findings["throttled"]["fix"]
    assert "ADA_48_PRO" in fix and "AMPERE_80" in fix  # compatible tiers to add
    assert "unpin the datacenter" in fix  # the volume pins it
    assert "stale-queue" in findings


def test_no_worker_placed_while_jobs_wait(cli, runpod, deployed):
    runpod.job_counts[deployed] = {
        "completed": 0,
        "failed": 0,
        "inProgress": 0,
        "inQueue": 2,
        "retried": 0,
    }
    _, findings = _doctor(cli)
    assert "no-capacity" in findings


def test_unhealthy_worker_with_a_full_disk(cli, runpod, deployed):
    runpod.add_worker(
        deployed,
        "UNHEALTHY",
        [
            "Downloading model-00003-of-00004.safetensors",
            "OSError: [Errno 28] No space left on device",
            "worker exited with exit code 139",
        ],
    )
    result, findings = _doctor(cli)
    assert result.code == 1
    assert "disk-full" in findings
    assert "No space left on device" in findings["disk-full"]["message"]
    assert "container_disk_gb" in findings["disk-full"]["fix"]


def test_running_worker_but_jobs_stay_queued(cli, runpod, deployed):
    runpod.add_worker(deployed, "RUNNING", ["downloading 28 GB of weights..."])
    runpod.job_counts[deployed] = {
        "completed": 0,
        "failed": 0,
        "inProgress": 0,
        "inQueue": 3,
        "retried": 0,
    }
    _, findings = _doctor(cli)
    assert "startup-before-handler" in findings
    assert "runpod.serverless.start()" in findings["startup-before-handler"]["message"]


def test_not_found_for_an_endpoint_that_exists_means_balance(cli, runpod, deployed):
    runpod.disabled.add(deployed)
    runpod.balance["clientBalance"] = -3.2
    result, findings = _doctor(cli)
    assert result.code == 1
    assert "apply --recreate" in findings["endpoint-disabled"]["fix"]
    assert "$-3.20" in findings["endpoint-disabled"]["message"]
    assert "negative-balance" in findings


def test_wrong_endpoint_id(cli, runpod, deployed):
    result, findings = _doctor(cli, "--endpoint-id", "nope1234")
    assert result.code == 1
    assert "endpoint-not-found" in findings


def test_rollout_in_progress_and_low_balance(cli, runpod, deployed, spec_file):
    runpod.add_worker(deployed, "IDLE")
    path = spec_file(
        {
            "gpu-jobs-worker:2026-11-28": "gpu-jobs-worker:2026-11-29",
            '["ADA_48_PRO", "AMPERE_48", "AMPERE_80"]': '["AMPERE_48"]',
        }
    )
    assert cli("apply", "--spec", str(path), "--offline").code == 0
    runpod.balance.update(clientBalance=1.0, currentSpendPerHr=0.5)
    _, findings = _doctor(cli)
    assert (
        "rollout-in-progress" in findings
        and "0% of workers" in (findings["rollout-in-progress"]["message"])
    )
    assert "low-balance" in findings


def test_workers_logs_purge_cancel(cli, runpod, deployed):
    runpod.add_worker(deployed, "IDLE", ["ready"])
    sick = runpod.add_worker(deployed, "UNHEALTHY", ["Traceback", "exit code 1"])
    workers = json.loads(cli("workers", "--spec", "endpoint.toml", "--json").out)
    assert workers["summary"]["unhealthy"] == 1 and len(workers["workers"]) == 2
    logs = cli("logs", "--spec", "endpoint.toml", "--worker", sick)
    assert logs.code == 0 and "Traceback" in logs.out
    runpod.job_counts[deployed] = {
        "completed": 0,
        "failed": 0,
        "inProgress": 0,
        "inQueue": 7,
        "retried": 0,
    }
    purge = cli("purge", "--spec", "endpoint.toml")
    assert purge.code == 0 and "removed 7" in purge.out
    cancel = cli("cancel", "--endpoint-id", deployed, "job-1", "--json")
    assert json.loads(cancel.out)["cancelled"] == [{"id": "job-1", "status": "CANCELLED"}]


def test_not_found_with_a_positive_balance_may_be_a_never_started_endpoint(cli, runpod, deployed):
    runpod.disabled.add(deployed)
    _, findings = _doctor(cli)
    finding = findings["endpoint-disabled"]
    assert "no worker has ever started" in finding["message"]
    assert "apply --recreate" in finding["fix"]
    assert "negative-balance" not in findings


def test_the_entry_point_runs_as_a_process(runpod, spec_file):
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "deploy", "plan", "--spec", str(spec_file())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "endpoint  gpu-jobs" in result.stdout and "create" in result.stdout
    assert RUNPOD_KEY not in result.stdout + result.stderr


def test_logs_return_while_the_stream_stays_open(cli, runpod, deployed):
    lines = [f"line {i}" for i in range(30)]
    wid = runpod.add_worker(deployed, "RUNNING", lines)
    # Far longer than the test's own timeout: the command returns only because the backfill
    # ends when the stream goes quiet, not because the stream closes.
    runpod.log_stream_open_s = 3600
    result = cli("logs", "--spec", "endpoint.toml", "--worker", wid, "--lines", "50", "--json")
    assert json.loads(result.out)["lines"] == lines
