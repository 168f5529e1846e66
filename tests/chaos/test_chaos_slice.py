"""A slice of ``python -m bench chaos`` in the suite: the whole stack on SQLite with
webhooks off (the harder case: only polls and reconcile bring jobs home), a few faults of
the kinds that can make a model run twice, each aimed at something in flight, and every job
checked against the GPU workers' own execution ledger."""

from __future__ import annotations

import pytest

from bench.chaos import run_config

pytestmark = pytest.mark.timeout(600)

KINDS = ("gpu_worker_sigkill", "endpoint_sigkill", "proxy_lost", "celery_pool_sigkill")


def test_killed_workers_and_lost_submits_run_no_attempt_twice(tmp_path):
    result = run_config(
        tmp_path,
        webhooks=False,
        kinds=KINDS,
        min_each=1,
        faults=len(KINDS),
        in_flight=3,
        max_s=300,
        settle_s=300,
    )
    # Every kind struck something in flight: a worker inside a model run, an endpoint
    # holding a job, a submit whose answer was lost, a Celery pool with jobs open.
    assert result["minimum_met"], result["faults"]
    # No attempt ran under two RunPod jobs, and no model ran twice but when RunPod ran the
    # same job again after its worker died (after the model finished, when a kill lands in
    # the moment before the result reaches the endpoint: reported, not an app fault).
    twice = "executed_twice_by_two_runpod_jobs_or_no_death"
    figures = {k: result[k] for k in ("lost", twice, "failed_wrongly")}
    figures.update({k: result[k] for k in ("left_non_terminal", "orphan_files")})
    assert figures == dict.fromkeys(figures, 0), result
    # The worker kill interrupted a model run (a start with no finish in the ledger), and
    # every job ran to its end on some worker, but one whose worker RunPod saw die twice.
    completed = result["jobs"] - result["failed_after_two_worker_deaths"]
    assert result["model_starts"] > result["model_finishes"] >= completed > 0, result
