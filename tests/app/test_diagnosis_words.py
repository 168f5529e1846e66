"""The pages word the operators' diagnosis rules: one set of facts, one set of rules."""

from __future__ import annotations

from app.endpoints.diagnosis import NO_CAPACITY, NO_WORKER, UNHEALTHY, diagnose, facts_of
from deploy.runpod.diagnosis import diagnose as doctor_findings
from deploy.runpod.vocabulary import WorkerRow


def report(*workers, crash_loop=None, **summary):
    return {"workers": list(workers), "summary": summary, "crashLoop": crash_loop}


def crashed(worker_id, code, *lines):
    return {
        "id": worker_id,
        "state": "unhealthy",
        "exitCode": code,
        "exitedAt": 1.0,
        "logTail": list(lines),
    }


def test_a_crash_loop_is_worded_with_what_its_exit_code_means_and_the_log():
    workers = report(
        crashed("w1", 137, "loading weights"),
        crashed("w2", 137, "loading weights", "Killed"),
        unhealthy=2,
    )
    health = {"jobs": {"inQueue": 1, "inProgress": 0}, "workers": {"unhealthy": 2}}
    words = diagnose(health, workers, 1)
    assert words.startswith("GPU workers are crash looping (2 crashes in a row): exit code 137")
    assert "loading weights | Killed" in words
    # doctor names the same crash from the same facts
    rules = {f.rule for f in doctor_findings(facts_of(health, workers, 1))}
    assert "out-of-memory" in rules


def test_one_unhealthy_worker_is_not_called_a_crash_loop():
    workers = report(crashed("w1", 1, "ImportError: torch"), unhealthy=1)
    health = {"jobs": {"inQueue": 1, "inProgress": 0}, "workers": {"unhealthy": 1}}
    assert diagnose(health, workers, 1) == UNHEALTHY


def test_a_busy_worker_will_take_the_job_so_throttling_is_not_blamed():
    health = {"jobs": {"inQueue": 1, "inProgress": 1}, "workers": {"throttled": 1, "running": 1}}
    assert diagnose(health, None, 1) is None
    health["workers"]["running"] = 0
    assert diagnose(health, None, 1) == NO_CAPACITY


def test_no_worker_in_any_state_for_queued_jobs():
    health = {"jobs": {"inQueue": 1, "inProgress": 0}, "workers": {}}
    assert diagnose(health, None, 1) == NO_WORKER
    assert diagnose({**health, "workers": {"initializing": 1}}, None, 1) is None


def test_a_runpod_worker_row_is_read_like_a_local_one():
    """RunPod's REST v2 workers are parsed once into ``WorkerRow`` and stored in the
    ``/workers`` shape: the diagnosis and the dashboard read them as they read local rows,
    and a malformed field is dropped instead of reaching a page."""
    runpod = {"id": "rp-w1", "status": "UNHEALTHY", "uptimeSeconds": 30, "gpuTypeId": "L4"}
    row = WorkerRow.from_runpod(runpod)
    assert row.state == "unhealthy" and row.uptime_s == 30 and row.gpu == "L4"
    stored = row.to_report()
    assert WorkerRow.from_report(stored) == row
    health = {"jobs": {"inQueue": 1, "inProgress": 0}, "workers": {"unhealthy": 1}}
    facts = facts_of(health, report(stored, unhealthy=1), 1)
    assert facts.workers == [row]  # one type for a worker, from the API to the rules
    assert facts.workers[0].age_s(facts.checked_at) == 30
    odd = WorkerRow.from_report({"id": "w2", "exitCode": "137", "startedAt": True})
    assert odd.exit_code is None and odd.started_at is None and odd.state == "unknown"
