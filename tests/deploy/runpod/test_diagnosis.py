"""The diagnosis rules as data: each says why, and they read only ``Facts``."""

from deploy.runpod.diagnosis import ERROR, RULES, Facts, Worker, diagnose


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
        workers=[Worker("w1", "exited", exit_code=137, log_tail=["Killed"])],
    )
    findings = {f.rule: f for f in diagnose(facts)}
    assert "out-of-memory" in findings and "crash-loop" not in findings
    assert findings["out-of-memory"].severity == ERROR and findings["out-of-memory"].why
    assert "stale-queue" in findings
