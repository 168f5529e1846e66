"""Webhooks to clients, idempotent submits and ``Prefer: wait`` on real parts: the web app
under gunicorn, a Celery worker, the deliveries worker on its own queue, the local endpoint
with runpod SDK workers, and receivers on 127.0.0.1 (issue 20)."""

from __future__ import annotations

import concurrent.futures
import importlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from app import create_app
from app.clients import tokens
from app.db import session_scope
from app.models import Job
from app.settings import Settings
from deploy.stack.services import Stack, whole_stack
from tests.support.http_server import HTTPStandIn, QuietHandler

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64
FAST = {
    "POLL_BASE_S": "0.5",
    "POLL_CAP_S": "2",
    "RECONCILE_INTERVAL_S": "2",
    "CLIENT_WEBHOOK_RETRY_BASE_S": "0.3",
    # A hanging receiver holds its delivery this long: longer than the next job takes.
    "CLIENT_WEBHOOK_TIMEOUT_S": "45",
}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver(HTTPStandIn):
    """A client's webhook receiver: answers ``answers`` in turn (then 200); ``hang`` never
    answers (until the test ends)."""

    answers: list[int] = field(default_factory=list)
    hang: bool = False
    got: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def handler(self):
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.got.append(Received(dict(self.headers.items()), body))
                if receiver.hang:
                    receiver.release.wait(90)
                    return
                code = receiver.answers.pop(0) if receiver.answers else 200
                self.send_body(code, b"ok")

        return Handler

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        super().__exit__(*exc)

    def events(self) -> list[str]:
        return [json.loads(r.body)["type"] for r in self.got]


@dataclass
class Client:
    stack: Stack
    token: str
    secret: str
    app: object

    def post(self, *, headers=None, body: bytes = VIDEO, **fields) -> requests.Response:
        data = {"pipeline": "echo", **fields}
        return requests.post(
            self.stack.web.url("/api/jobs"),
            data=data,
            files={"file": ("clip.mp4", body, "video/mp4")},
            headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
            timeout=90,
        )

    def get(self, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.get(self.stack.web.url(path), headers=headers, timeout=90, **kwargs)

    def wait_job(self, job_id: str, timeout: float = 90) -> dict:
        return self.wait(lambda: (j := self.get(f"/api/jobs/{job_id}").json())["terminal"] and j)

    def wait(self, check, what: str = "the condition", timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(
            f"{what} not met after {timeout}s\nworker:\n{self.stack.worker.log_tail(20)}\n"
            f"deliveries:\n{self.stack.deliveries.log_tail(20)}"
        )


def delivered(client: Client, job_id: str, count: int) -> list[dict] | None:
    """The job's deliveries once ``count`` of them are recorded as delivered."""
    listed = client.get(f"/api/jobs/{job_id}/webhooks").json()["deliveries"]
    return listed if sum(d["state"] == "delivered" for d in listed) >= count else None


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[Client]:
    with whole_stack(
        tmp_path_factory.mktemp("api-stack"),
        endpoint_options={"workers_max": 1, "idle_timeout": 60, "webhook_retry_delay": 1},
        extra_env=FAST,
        beat=False,
        deliveries=True,
    ) as stack:
        app = create_app(Settings.from_env(stack.env))
        with app.app_context(), session_scope() as session:
            made = tokens.create(session, stack.env["SECRET_KEY"], "integration")
        yield Client(stack, made.token, made.webhook_secret, app)
        app.extensions["db"].engine.dispose()


def test_start_and_completed_reach_the_receiver_signed(client):
    with Receiver() as receiver:
        created = client.post(
            webhook=f"{receiver.origin}/hooks",
            webhook_events_filter="start,completed",
            params='{"sleep_s": 1}',
        )
        assert created.status_code == 201, created.text
        job = client.wait_job(created.json()["id"])
        assert job["status"] == "COMPLETED"
        client.wait(lambda: len(receiver.got) >= 2, "two deliveries")
        assert sorted(receiver.events()) == ["job.completed", "job.start"]
        for got in receiver.got:
            body = Webhook(client.secret).verify(got.body, got.headers)
            assert body["data"]["id"] == job["id"] and body["data"]["token_name"] == "integration"
        done = json.loads(next(r.body for r in receiver.got if b"job.completed" in r.body))
        assert done["data"]["status"] == "COMPLETED"
        listed = client.wait(lambda: delivered(client, job["id"], 2), "both recorded")
        assert {d["event"] for d in listed} == {"start", "completed"}
        assert all(len(d["attempts"]) == 1 for d in listed)


def test_a_failing_receiver_gets_the_same_webhook_id_until_it_answers(client):
    with Receiver(answers=[500, 500]) as receiver:
        created = client.post(webhook=f"{receiver.origin}/hooks")
        job_id = created.json()["id"]
        client.wait_job(job_id)
        client.wait(lambda: len(receiver.got) >= 3, "three attempts")
        time.sleep(1.0)  # a fourth attempt, if one were wrongly sent, would arrive now
        assert len(receiver.got) == 3
        assert len({r.headers["webhook-id"] for r in receiver.got}) == 1
        for got in receiver.got:
            Webhook(client.secret).verify(got.body, got.headers)
        (delivery,) = client.wait(lambda: delivered(client, job_id, 1), "recorded")
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
        assert delivery["state"] == "delivered"

        again = client.stack.web.url(f"/api/jobs/{job_id}/webhooks/{delivery['id']}/redeliver")
        answer = requests.post(
            again, headers={"Authorization": f"Bearer {client.token}"}, timeout=30
        )
        assert answer.status_code == 202
        client.wait(lambda: len(receiver.got) >= 4, "the redelivery")
        assert receiver.got[-1].headers["webhook-id"] == delivery["id"]


def test_a_4xx_answer_is_not_retried(client):
    with Receiver(answers=[410]) as receiver:
        job_id = client.post(webhook=f"{receiver.origin}/hooks").json()["id"]
        client.wait_job(job_id)
        client.wait(
            lambda: (
                client.get(f"/api/jobs/{job_id}/webhooks").json()["deliveries"][0]["state"]
                == "failed"
            ),
            "the delivery to fail",
        )
        assert len(receiver.got) == 1


def test_a_receiver_that_never_answers_does_not_delay_the_next_job(client):
    with Receiver(hang=True) as receiver:
        first = client.post(webhook=f"{receiver.origin}/hooks").json()["id"]
        client.wait_job(first)
        client.wait(lambda: receiver.got, "the hanging delivery")
        # More hanging deliveries than the jobs' worker has processes (2).
        (delivery,) = client.get(f"/api/jobs/{first}/webhooks").json()["deliveries"]
        again = client.stack.web.url(f"/api/jobs/{first}/webhooks/{delivery['id']}/redeliver")
        for _ in range(3):
            requests.post(again, headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
        client.wait(lambda: len(receiver.got) >= 4, "four hanging deliveries")
        second = client.post().json()["id"]
        assert client.wait_job(second)["status"] == "COMPLETED"
        # The delivery is still hanging: no attempt of it has been recorded yet.
        (delivery,) = client.get(f"/api/jobs/{first}/webhooks").json()["deliveries"]
        assert delivery["attempts"] == []


def test_prefer_wait_answers_with_the_finished_job(client):
    created = client.post(headers={"Prefer": "wait=60"}, params='{"sleep_s": 1}')
    assert created.status_code == 201
    assert created.json()["status"] == "COMPLETED"
    assert created.headers["Preference-Applied"] == "wait=60"
    job_id = created.json()["id"]
    # GET with a wait on a job still running answers once it ends.
    running = client.post(params='{"sleep_s": 2}').json()["id"]
    got = client.get(f"/api/jobs/{running}", headers={"Prefer": "wait=60"})
    assert got.json()["status"] == "COMPLETED" and got.headers["Preference-Applied"] == "wait=60"
    assert client.get(f"/api/jobs/{job_id}").json()["status"] == "COMPLETED"


def test_twenty_concurrent_posts_with_one_key_make_one_job_and_one_run(client):
    before = client.stack.endpoint.get("stats").json()["requests"].get("run", 0)
    key = {"Idempotency-Key": "burst-1"}
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: client.post(headers=key), range(20)))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {201, 409}, codes
    ids = {a.json()["id"] for a in answers if a.status_code == 201}
    assert len(ids) == 1
    (job_id,) = ids
    job = client.wait_job(job_id)
    assert job["status"] == "COMPLETED"
    assert client.post(headers=key).json()["id"] == job_id  # and later, the same job
    with client.app.app_context(), session_scope() as session:
        row = session.get(Job, job_id)
        assert len(row.attempts) == 1 and row.attempts[0].claimed_runpod_id is not None
        assert (
            session.scalar(select(func.count()).select_from(Job).where(Job.owner == row.owner)) >= 1
        )
    assert client.stack.endpoint.get("stats").json()["requests"]["run"] == before + 1
    different = client.post(headers=key, params='{"sleep_s": 3}')
    assert different.status_code == 422


def test_a_client_generated_from_the_openapi_document_submits_a_job(client, tmp_path):
    """openapi-python-client, offline, from the served document: its methods carry our
    operationIds (create_job, get_job) and it submits and waits for a job."""
    (tmp_path / "openapi.json").write_text(json.dumps(client.get("/api/openapi.json").json()))
    bin_dir = os.path.dirname(sys.executable)
    done = subprocess.run(
        [
            os.path.join(bin_dir, "openapi-python-client"),
            "generate",
            "--path",
            str(tmp_path / "openapi.json"),
            "--output-path",
            str(tmp_path / "gpu_jobs_client"),
            "--meta",
            "none",
        ],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        generated = importlib.import_module("gpu_jobs_client")
        create_job = importlib.import_module("gpu_jobs_client.api.jobs.create_job")
        get_job = importlib.import_module("gpu_jobs_client.api.jobs.get_job")
        models = importlib.import_module("gpu_jobs_client.models")
        types = importlib.import_module("gpu_jobs_client.types")
        api = generated.AuthenticatedClient(base_url=client.stack.web.base_url, token=client.token)
        with api:
            body = models.CreateJobBody(
                file=types.File(
                    payload=io.BytesIO(VIDEO), file_name="clip.mp4", mime_type="video/mp4"
                ),
                pipeline=models.CreateJobBodyPipeline("echo"),
                params='{"sleep_s": 1}',
            )
            job = create_job.sync(client=api, body=body)
            assert isinstance(job, models.Job), job
            assert job.token_name == "integration"
            finished = get_job.sync(job_id=job.id, client=api, prefer="wait=60")
            assert finished.status == "COMPLETED"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("gpu_jobs_client")]:
            del sys.modules[name]


def test_progress_events_come_at_most_every_two_seconds(client):
    """The worker reports progress about once a second; the receiver hears of it at most
    once per 2 s (the events' own timestamps, set when each was made, say so)."""
    from datetime import datetime

    with Receiver() as receiver:
        created = client.post(
            webhook=f"{receiver.origin}/hooks",
            webhook_events_filter="progress,completed",
            params='{"sleep_s": 6}',
        )
        job_id = created.json()["id"]
        client.wait_job(job_id)
        client.wait(lambda: "job.completed" in receiver.events(), "the completed event")
        progress = [json.loads(r.body) for r in receiver.got if b'"job.progress"' in r.body]
        assert len(progress) >= 2, receiver.events()
        assert "job.start" not in receiver.events()  # not asked for
        moments = sorted(datetime.fromisoformat(p["timestamp"]) for p in progress)
        gaps = [(b - a).total_seconds() for a, b in zip(moments, moments[1:], strict=False)]
        assert all(gap >= 1.9 for gap in gaps), gaps
        assert all(p["data"]["status"] == "IN_PROGRESS" for p in progress)
