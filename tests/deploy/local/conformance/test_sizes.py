"""Body sizes as RunPod documents them: /run up to 10 MB, /runsync up to 20 MB, a
worker's result up to about 20 MB; over a limit a clear answer, never a truncated body."""

from __future__ import annotations

import json

import pytest

from tests.deploy.local.conformance.conftest import endpoint

pytestmark = pytest.mark.timeout(240)

KIB = 1024
MB = 1024 * 1024


def body_of(size: int, **extra) -> bytes:
    """A /run body of exactly ``size`` bytes whose input blob fills it up."""
    shell = json.dumps({"input": {"mode": "length", "blob": "", **extra}}).encode()
    blob = "x" * (size - len(shell))
    return json.dumps({"input": {"mode": "length", "blob": blob, **extra}}).encode()


@pytest.fixture(scope="module")
def ep(tmp_path_factory):
    with endpoint(tmp_path_factory.mktemp("sizes"), "async", workers_min=1) as ep:
        yield ep


@pytest.mark.parametrize("size", [KIB, 400 * KIB, 10 * MB - 1], ids=["1KiB", "400KiB", "10MB-1"])
def test_run_accepts_bodies_up_to_10_mb_whole(ep, size):
    data = body_of(size)
    assert len(data) == size
    resp = ep.post("run", data=data)
    assert resp.status_code == 200, resp.text
    final = ep.wait_status(resp.json()["id"], timeout=60)
    assert final["status"] == "COMPLETED", final
    assert final["output"]["length"] == len(json.loads(data)["input"]["blob"])


def test_run_refuses_a_body_over_10_mb_with_413(ep):
    resp = ep.post("run", data=body_of(10 * MB + 1))
    assert resp.status_code == 413
    assert "over 10 MB" in resp.json()["error"]


def test_runsync_accepts_just_under_20_mb_and_refuses_just_over(ep):
    data = body_of(20 * MB - 1)
    resp = ep.post("runsync", data=data, params={"wait": 120000})
    assert resp.status_code == 200 and resp.json()["status"] == "COMPLETED", resp.text[:300]
    assert resp.json()["output"]["length"] == len(json.loads(data)["input"]["blob"])
    over = ep.post("runsync", data=body_of(20 * MB + 1))
    assert over.status_code == 413 and "over 20 MB" in over.json()["error"]


@pytest.mark.parametrize("size", [KIB, 400 * KIB, 20 * MB - 64], ids=["1KiB", "400KiB", "20MB-64"])
def test_worker_results_up_to_20_mb_arrive_whole(ep, size):
    job = ep.api().run({"mode": "size", "bytes": size})
    final = ep.wait_status(job["id"], timeout=60)
    assert final["status"] == "COMPLETED", str(final)[:300]
    assert len(final["output"]["blob"]) == size


def test_worker_result_over_20_mb_fails_the_job_as_on_runpod(ep):
    # RunPod answers the worker's job-done 400 and the job fails (worker-comfyui#129).
    job = ep.api().run({"mode": "size", "bytes": 20 * MB + 1})
    final = ep.wait_status(job["id"], timeout=60)
    assert final["status"] == "FAILED"
    assert "result over 20 MB" in final["error"]


@pytest.mark.parametrize("depth", [101, 100_000])
def test_deeply_nested_json_is_a_400_not_a_crash(ep, depth):
    before = ep.api().health()["jobs"]
    data = '{"input": {"a": ' + "[" * depth + "]" * depth + "}}"
    resp = ep.post("run", data=data)
    assert resp.status_code == 400
    assert "nests deeper than 100 levels" in resp.json()["error"]
    assert ep.api().health()["jobs"] == before


def test_nesting_up_to_the_cap_is_accepted(ep):
    data = '{"input": {"mode": "length", "blob": "", "a": ' + "[" * 98 + "]" * 98 + "}}"
    resp = ep.post("run", data=data)
    assert resp.status_code == 200, resp.text
    assert ep.wait_status(resp.json()["id"])["status"] == "COMPLETED"
