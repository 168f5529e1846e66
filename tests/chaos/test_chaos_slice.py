"""A slice of ``python -m bench chaos`` in the suite: the whole stack on SQLite with
webhooks off (the harder case: only polls and reconcile bring jobs home), a dozen faults
drawn at random, and every job checked against the endpoint's own record."""

from __future__ import annotations

import pytest

from bench.chaos import run_config

pytestmark = pytest.mark.timeout(600)


def test_faults_lose_nothing_and_run_nothing_twice(tmp_path):
    result = run_config(
        tmp_path, webhooks=False, jobs=8, faults=12, outage_s=0, settle_s=300, seed=None
    )
    figures = {k: result[k] for k in ("lost", "executed_twice", "failed_wrongly")}
    figures.update({k: result[k] for k in ("left_non_terminal", "orphan_files")})
    assert figures == dict.fromkeys(figures, 0), result
    assert result["faults_injected"] >= 10, result["faults"]
    assert result["executed"] == result["jobs"] > 0, result
