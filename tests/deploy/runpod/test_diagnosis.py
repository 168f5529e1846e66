"""The diagnosis rules as data: each says why, and they read only ``Facts``."""

from deploy.runpod.diagnosis import ERROR, RULES, Facts, diagnose
from deploy.runpod.vocabulary import WorkerRow


def test_every_rule_has_a_unique_id_a_title_and_a_why():
    assert len({r.id for r in RULES}) == len(RULES)
    assert all(r.title and r.why for r in RULES)


def test_a_healthy_idle_endpoint_has_no_findings():
    facts = Facts(target="local", endpoint_id="ep", health={"jobs": {}, "workers": {"idle": 1}})
    assert diagnose(facts) == []


def test_one_crash_gets_one_cause_with_its_fix_and_why():
    facts = Facts(
        target="local",
        endpoint_id="ep",
        health={"jobs": {"inQueue": 2}, "workers": {"unhealthy": 1}},
        workers=[WorkerRow("w1", "exited", exit_code=137, log_tail=("Killed",))],
    )
    findings = {f.rule: f for f in diagnose(facts)}
    assert "out-of-memory" in findings and "crash-loop" not in findings
    assert findings["out-of-memory"].severity == ERROR and findings["out-of-memory"].why
    assert "stale-queue" in findings


def test_the_web_apps_waiting_jobs_are_a_fact_doctor_leaves_out():
    """With jobs the web app holds as queued, the same rules say what the pages show;
    doctor knows no such jobs, so those rules never speak there."""
    finished = {"jobs": {"inQueue": 0, "inProgress": 0}, "workers": {}}
    doctor = Facts(target="local", endpoint_id="ep", health=finished)
    assert diagnose(doctor) == []
    app = Facts(target="local", endpoint_id="ep", health=finished, waiting=2)
    assert {f.rule for f in diagnose(app)} == {"finished-upstream", "no-worker"}
    queued_there = {"jobs": {"inQueue": 2, "inProgress": 0}, "workers": {"initializing": 1}}
    starting = Facts(target="local", endpoint_id="ep", health=queued_there, waiting=2)
    assert diagnose(starting) == []


def test_workers_the_scaler_stopped_are_not_crashes():
    stopped = [WorkerRow(f"w{i}", "exited", exit_code=143) for i in range(3)]
    facts = Facts(target="local", endpoint_id="ep", workers=stopped, waiting=1)
    assert facts.crashed == [] and not facts.crash_looping
    crashed = [WorkerRow(f"w{i}", "exited", exit_code=1) for i in range(2)]
    assert Facts(target="local", endpoint_id="ep", workers=crashed).crash_looping
    alive = [*crashed, WorkerRow("w9", "idle")]
    assert not Facts(target="local", endpoint_id="ep", workers=alive).crash_looping


def test_a_registry_refuses_a_rule_id_twice_and_an_unknown_severity():
    import pytest

    from deploy.findings import Rules

    rules = Rules()
    rules.rule("one", ERROR, "title", "why")(lambda facts: iter(()))
    with pytest.raises(ValueError, match="registered twice"):
        rules.rule("one", ERROR, "title", "why")
    with pytest.raises(ValueError, match="unknown severity"):
        rules.rule("two", "fatal", "title", "why")
