"""Issue 19 on RunPod (the stand-in built from the published REST v2 spec): the breaker
scales the endpoint to zero workers and restores it on resume; the bill of a worker is read
from its REST v2 uptime."""

from __future__ import annotations

import html

import pytest

from app.endpoints import billing, breaker
from app.endpoints.health import refresh_snapshot
from app.models import Attempt, AttemptState, Job, Status
from deploy.runpod.jobapi import JobAPI
from tests.app.conftest import login_admin
from tests.deploy.ops.runpod_standin import RunPodStandIn

CRASH_LOG = ["Traceback (most recent call last):", "ModuleNotFoundError: No module named 'cv2'"]


@pytest.fixture
def runpod():
    with RunPodStandIn() as standin:
        body = {
            "name": "gpu",
            "type": "QUEUE",
            "gpu": {"pools": ["ADA_24"]},
            "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
            "workers": {"max": 3},
            "image": "acme/w:1",
        }
        created = standin._op_createEndpoint({}, {}, body)[1]
        standin.endpoints["ep-live"] = standin.endpoints.pop(created["id"])
        standin.endpoints["ep-live"]["id"] = "ep-live"
        for table in (standin.versions, standin.releases, standin.workers):
            table["ep-live"] = table.pop(created["id"])
        yield standin
        assert standin.violations == []


def on_runpod(settings, runpod, **changes):
    return settings.replace(
        runpod_api_key=runpod.api_key,
        runpod_endpoint_id="ep-live",
        runpod_endpoint_base_url=runpod.rest_url,
        runpod_rest_url=runpod.rest_url,
        runpod_graphql_url=runpod.graphql_url,
        **changes,
    )


def test_unhealthy_workers_trip_the_breaker_which_scales_to_zero_until_resumed(
    app, client, settings, runpod
):
    from app.db import get_session

    settings = on_runpod(settings, runpod, breaker_scale_to_zero=True)
    api = JobAPI("ep-live", runpod.api_key, runpod.rest_url)
    with app.app_context():
        session = get_session()
        runpod.add_worker("ep-live", "UNHEALTHY", CRASH_LOG)
        snapshot = refresh_snapshot(session, settings, api, queued=1)
        assert breaker.observe(session, settings, snapshot, "default") is None, "one crash"
        for _ in range(2):
            runpod.add_worker("ep-live", "UNHEALTHY", CRASH_LOG)
        snapshot = refresh_snapshot(session, settings, api, queued=1)
        state = breaker.observe(session, settings, snapshot, "default")
        assert state is not None and state.open
        assert state.cause == "ModuleNotFoundError: No module named 'cv2'"
        assert runpod.endpoints["ep-live"]["workers"]["max"] == 0 and state.workers_max == 3
    login_admin(client)
    panel = html.unescape(client.get("/admin/panel").get_data(as_text=True))
    assert "Endpoint default is paused: ModuleNotFoundError: No module named 'cv2'" in panel
    # The button is an admin's, with its CSRF token.
    assert client.post("/admin/resume/default").status_code == 400
    with app.app_context():
        breaker.resume(get_session(), settings, "default")
        assert runpod.endpoints["ep-live"]["workers"]["max"] == 3
        assert not breaker.load(get_session(), "default").open


def test_a_runpod_workers_uptime_is_charged_to_its_jobs_and_idle(app, settings, runpod):
    from app.db import get_session

    settings = on_runpod(settings, runpod)
    worker = runpod.add_worker("ep-live", "IDLE")  # up 60 s
    api = JobAPI("ep-live", runpod.api_key, runpod.rest_url)
    with app.app_context():
        session = get_session()
        job = Job(pipeline="echo", status=Status.COMPLETED, worker_id=worker, execution_ms=4000)
        job.runpod_id = "rp-1"
        session.add(job)
        session.commit()
        session.add(Attempt(job=job, number=1, state=AttemptState.SENT, runpod_id="rp-1"))
        session.commit()
        assert billing.refresh(session, settings, api) == 1
        price = billing.price(settings)
        session.refresh(job)
        assert job.cost_usd == pytest.approx(4 * price, abs=price)
        assert billing.spent(session, billing.utcnow().replace(year=2000)) == pytest.approx(
            60 * price, abs=2 * price
        )
