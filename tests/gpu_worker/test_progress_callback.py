"""The worker's progress callback to the app: sent beside RunPod's, never failing the job."""

from __future__ import annotations

import json
import threading

from deploy.stack.net import free_port
from gpu_worker.handler import run_job
from tests.support.http_server import HTTPStandIn, QuietHandler


class App(HTTPStandIn):
    """Records progress callbacks; answers ``status`` (410 means: stop sending)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict] = []
        self.lock = threading.Lock()

    def handler(self):
        app = self

        class Handler(QuietHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                with app.lock:
                    app.bodies.append(json.loads(self.rfile.read(length)))
                self.send_json(app.status, {"ok": app.status == 200})

        return Handler


def job(url: str) -> dict:
    return {
        "id": "rp-42",
        "input": {
            "pipeline": "echo",
            "params": {"sleep_s": 0.3},
            "callbacks": {"progress": f"{url}/callbacks/7/progress?exp=1&sig=x"},
        },
    }


def test_the_worker_posts_its_progress_to_the_app(worker_env, monkeypatch):
    monkeypatch.setenv("RUNPOD_POD_ID", "worker-abc")
    with App() as app:
        result = run_job(job(app.origin))
    assert "error" not in result, result
    # The newest update replaces one not yet sent, so which arrive depends on timing; each
    # that does is one the worker reported, with its worker and RunPod job ids.
    assert app.bodies
    phases = {body["progress"]["phase"] for body in app.bodies}
    assert phases <= {"starting", "echo"}, app.bodies
    percents = [b["progress"]["percent"] for b in app.bodies if "percent" in b["progress"]]
    assert percents == sorted(percents), "progress only rises"
    assert all(body["worker_id"] == "worker-abc" for body in app.bodies)
    assert all(body["job_id"] == "rp-42" for body in app.bodies)


def test_a_410_stops_the_callbacks_and_the_job_still_completes(worker_env):
    with App(status=410) as app:
        result = run_job(job(app.origin))
    assert "error" not in result, result
    assert len(app.bodies) == 1


def test_an_unreachable_app_does_not_fail_the_job(worker_env):
    result = run_job(job(f"http://127.0.0.1:{free_port()}"))
    assert "error" not in result, result
    assert result["pipeline"] == "echo"


def test_a_bad_callback_url_is_refused_like_any_bad_input(worker_env):
    bad = {"id": "x", "input": {"pipeline": "echo", "callbacks": {"progress": "file:///etc"}}}
    assert "callbacks.progress" in run_job(bad)["error"]
    odd = {"id": "x", "input": {"pipeline": "echo", "callbacks": {"bogus": "http://a/b"}}}
    assert "callbacks.bogus: unknown" in run_job(odd)["error"]
