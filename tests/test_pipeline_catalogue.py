"""The app's pipeline catalogue mirrors the GPU worker's pipelines.

The two run on different machines, so ``app`` cannot import ``gpu_worker``; the app keeps
its own copy of each pipeline's parameters to refuse bad ones at upload time. This test is
what keeps the copy honest: a parameter added, removed or re-bounded on one side only would
let an upload through that the GPU then fails, or refuse one the GPU would take.
"""

from __future__ import annotations

import pytest

from app import pipelines as app_pipelines
from gpu_worker import pipelines as worker_pipelines


@pytest.mark.parametrize("name", sorted(app_pipelines.CATALOGUE))
def test_app_offers_only_pipelines_the_worker_has(name):
    assert name in worker_pipelines.names(), f"the app offers {name!r}; no GPU pipeline has it"


@pytest.mark.parametrize("name", sorted(set(app_pipelines.CATALOGUE) - {"echo"}))
def test_parameters_match_the_worker(name):
    offered = app_pipelines.CATALOGUE[name]
    worker = worker_pipelines.get(name)
    assert set(offered.params) == set(worker.params), name
    for param, mine in offered.params.items():
        theirs = worker.params[param]
        where = f"{name}.{param}"
        assert mine.kind is theirs.type, where
        assert mine.minimum == theirs.minimum, where
        assert mine.maximum == theirs.maximum, where
        assert tuple(mine.choices) == tuple(theirs.choices), where
    assert offered.input_name in worker.inputs, f"{name}: the worker reads {worker.inputs}"
