"""The execution ledger the chaos bench counts from: what a GPU worker writes around a
model run (only when EXECUTION_LEDGER names a file), and how the bench reads it."""

from __future__ import annotations

from bench.chaos import executions, read_ledger
from gpu_worker.handler import reset_runtime, run_job


def _entry(event, job, attempt, runpod_id, pid=1):
    return {"event": event, "job_key": job, "attempt": attempt, "runpod_id": runpod_id, "pid": pid}


def test_a_worker_writes_a_start_and_a_finish_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("WORK_DIR", str(tmp_path / "work"))
    ledger = tmp_path / "executions.jsonl"
    job = {"input": {"pipeline": "echo", "params": {"x": 1}, "job_key": "app-1"}}
    monkeypatch.delenv("EXECUTION_LEDGER", raising=False)
    reset_runtime()
    assert run_job(job)["echo"] == {"x": 1}
    assert not ledger.exists()
    monkeypatch.setenv("EXECUTION_LEDGER", str(ledger))
    reset_runtime()
    try:
        assert run_job(job)["echo"] == {"x": 1}
    finally:
        reset_runtime()
    entries = read_ledger(ledger)
    assert [e["event"] for e in entries] == ["start", "finish"]
    assert {e["job_key"] for e in entries} == {"app-1"}
    assert all(isinstance(e["pid"], int) for e in entries)


def test_a_model_run_again_under_another_runpod_id_is_executed_twice():
    counted = executions(
        [
            _entry("start", "a", 7, "rp-1"),
            _entry("start", "a", 7, "rp-2", pid=2),  # a second RunPod job ran the attempt
            _entry("finish", "a", 7, "rp-2", pid=2),
            _entry("start", "b", 8, "rp-3"),
            _entry("finish", "b", 8, "rp-3"),
            _entry("start", "b", 8, "rp-3"),  # run again, though no worker died
            _entry("finish", "b", 8, "rp-3"),
        ]
    )
    assert counted["twice"] == counted["broken"] == [("a", 7), ("b", 8)]
    assert counted["repeated"] == {"rp-3": 2}


def test_a_runpod_job_started_again_after_its_worker_died_is_a_repeated_run():
    counted = executions(
        [
            _entry("start", "a", 7, "rp-1", pid=1),  # killed mid-model
            _entry("start", "a", 7, "rp-1", pid=2),  # RunPod ran the same job again
            _entry("finish", "a", 7, "rp-1", pid=2),
            _entry("start", "b", 8, "rp-2", pid=1),
            _entry("finish", "b", 8, "rp-2", pid=1),  # then died before the result got out
            _entry("start", "b", 8, "rp-2", pid=3),
            _entry("finish", "b", 8, "rp-2", pid=3),
        ],
        requeued={"rp-1": 1, "rp-2": 1},
    )
    assert counted["repeated"] == {"rp-1": 2, "rp-2": 2}
    # b's model finished twice: executed twice by the worker-side count, but under one
    # RunPod job that RunPod ran again after its worker died, not a second RunPod job.
    assert counted["twice"] == [("b", 8)] and counted["broken"] == []
    assert counted["rerun_after_finish"] == ["rp-2"]
    assert (counted["starts"], counted["finishes"]) == (4, 3)
