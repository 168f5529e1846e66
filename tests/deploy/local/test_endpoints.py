"""One local endpoint process serving several endpoints, as RunPod's paths allow
(``/v2/<endpoint id>/...``): each its own queue, workers, policy and worker command."""

from __future__ import annotations

import sys

import pytest

from deploy.stack.local_endpoint import endpoint_spec, local_endpoints
from tests.deploy.local.conftest import sdk_worker_command

pytestmark = pytest.mark.timeout(180)


def test_a_long_job_on_one_endpoint_does_not_delay_a_short_job_on_the_other(tmp_path):
    video = endpoint_spec("video", worker_command=sdk_worker_command(), workers_max=1)
    light = endpoint_spec("light", worker_command=sdk_worker_command(), workers_max=2)
    with local_endpoints(tmp_path, [video, light]) as ep:
        long = ep.api("video").run({"mode": "sleep", "seconds": 120})["id"]
        ep.wait_status(long, {"IN_PROGRESS"}, timeout=60, endpoint="video")
        short = ep.api("light").run({"mode": "echo", "x": 1})["id"]
        done = ep.wait_status(short, timeout=60, endpoint="light")
        assert done["status"] == "COMPLETED"
        assert ep.get(f"status/{long}", "video").json()["status"] == "IN_PROGRESS"
        # Each endpoint knows its own jobs and workers only.
        assert ep.get(f"status/{short}", "video").status_code == 404
        light_workers = {w["id"] for w in ep.workers("light")["workers"]}
        video_workers = {w["id"] for w in ep.workers("video")["workers"]}
        assert light_workers and video_workers and not light_workers & video_workers
        assert done["workerId"] in light_workers


def test_purging_one_endpoint_leaves_the_others_queue(tmp_path):
    # Workers that never become ready keep both queues waiting.
    never_ready = f"{sys.executable} -c 'import time; time.sleep(600)'"
    specs = [endpoint_spec(name, worker_command=never_ready, stop_grace=1) for name in ("a", "b")]
    with local_endpoints(tmp_path, specs) as ep:
        for name in ("a", "b"):
            for i in range(2):
                ep.api(name).run({"i": i})
        assert ep.post("purge-queue", "a").json()["removed"] == 2
        assert ep.api("a").health()["jobs"]["inQueue"] == 0
        assert ep.api("b").health()["jobs"]["inQueue"] == 2


def test_a_crash_looping_worker_command_on_one_endpoint_leaves_the_other_serving(tmp_path):
    broken = endpoint_spec(
        "broken", worker_command=f"{sys.executable} -c 'import no_such_module'", stop_grace=1
    )
    fine = endpoint_spec("fine", worker_command=sdk_worker_command())
    with local_endpoints(tmp_path, [broken, fine]) as ep:
        stuck = ep.api("broken").run({"x": 1})["id"]
        ep.wait_for(lambda: ep.workers("broken")["crashLoop"]["active"], 60, what="a crash loop")
        for i in range(3):
            job = ep.api("fine").run({"mode": "echo", "i": i})["id"]
            assert ep.wait_status(job, timeout=60, endpoint="fine")["status"] == "COMPLETED"
        assert ep.get(f"status/{stuck}", "broken").json()["status"] == "IN_QUEUE"
        assert not ep.workers("fine")["crashLoop"]["active"]
        assert "No module named" in " ".join(ep.workers("broken")["crashLoop"]["logTail"])


def test_an_unknown_endpoint_is_not_found(tmp_path):
    with local_endpoints(tmp_path, [endpoint_spec("a"), endpoint_spec("b")]) as ep:
        assert ep.get("health", "c").status_code == 404
        assert ep.get("health", "b").status_code == 200
