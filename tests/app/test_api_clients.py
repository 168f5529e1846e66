"""Named tokens, quotas, idempotency keys, Prefer and webhook URLs, through the JSON API
and the CLI (issue 20). The deliveries themselves run on real parts in test_api_webhooks."""

from __future__ import annotations

import io
import re
import subprocess

import pytest
from sqlalchemy import func, select

from app import create_app
from app.models import Job
from app.services import services_of
from tests.app.conftest import API_TOKEN

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


def make_token(runner, name: str, *limits: str) -> tuple[str, str]:
    result = runner.invoke(args=["admin", "tokens", "create", name, *limits])
    assert result.exit_code == 0, result.output
    token = re.search(r"token:\s+(\S+)", result.output).group(1)
    secret = re.search(r"webhook secret:\s+(whsec_\S+)", result.output).group(1)
    return token, secret


def post_job(client, token: str, *, headers=None, body: bytes = VIDEO, **fields):
    data = {"file": (io.BytesIO(body), "clip.mp4"), "pipeline": "echo", **fields}
    return client.post(
        "/api/jobs",
        data=data,
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
        content_type="multipart/form-data",
    )


def job_count(app) -> int:
    with app.app_context():
        from app.db import get_session

        return get_session().scalar(select(func.count()).select_from(Job))


def test_a_named_token_is_shown_once_names_its_jobs_and_is_refused_once_revoked(
    app, client, runner
):
    token, secret = make_token(runner, "ci-nightly")
    created = post_job(client, token)
    assert created.status_code == 201, created.json
    assert created.json["token_name"] == "ci-nightly"
    assert (
        client.get(
            f"/api/jobs/{created.json['id']}", headers={"Authorization": f"Bearer {token}"}
        ).json["token_name"]
        == "ci-nightly"
    )
    listed = runner.invoke(args=["admin", "tokens", "list"]).output
    assert "ci-nightly" in listed and "active" in listed and "today 1 jobs" in listed
    assert token not in listed and secret not in listed  # shown once, stored hashed
    again = runner.invoke(args=["admin", "tokens", "create", "ci-nightly"])
    assert again.exit_code != 0 and "exists" in again.output

    assert runner.invoke(args=["admin", "tokens", "revoke", "ci-nightly"]).exit_code == 0
    refused = client.get("/api/jobs", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and "revoked" in refused.json["error"]
    # API_TOKENS keeps working beside named tokens.
    assert (
        client.get("/api/jobs", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200
    )


def test_quotas_answer_429_naming_the_limit_and_when_it_resets(app, client, runner):
    token, _ = make_token(runner, "daily", "--max-jobs-per-day", "1")
    assert post_job(client, token).status_code == 201
    over = post_job(client, token)
    assert over.status_code == 429
    assert over.json["limit"] == "max_jobs_per_day" and over.json["resets_at"].endswith("+00:00")
    assert "max_jobs_per_day 1" in over.json["error"] and int(over.headers["Retry-After"]) > 0
    assert job_count(app) == 1

    busy, _ = make_token(runner, "busy", "--max-concurrent", "1")
    assert post_job(client, busy).status_code == 201
    over = post_job(client, busy)
    assert over.status_code == 429 and over.json["limit"] == "max_concurrent"
    assert job_count(app) == 2


def test_bad_quota_values_are_refused_by_the_cli(runner):
    result = runner.invoke(args=["admin", "tokens", "create", "x", "--max-concurrent", "0"])
    assert result.exit_code != 0 and "--max-concurrent" in result.output
    result = runner.invoke(args=["admin", "tokens", "create", "bad name!"])
    assert result.exit_code != 0 and "token name" in result.output


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    app, client, runner, enqueued
):
    token, _ = make_token(runner, "retrying-client")
    key = {"Idempotency-Key": "upload-7f3a"}
    first = post_job(client, token, headers=key, params='{"sleep_s": 1}')
    assert first.status_code == 201
    again = post_job(client, token, headers=key, params='{"sleep_s": 1}')
    assert again.status_code == 201 and again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert job_count(app) == 1
    assert [e for e in enqueued if e[0] == "tasks.submit"] == [("tasks.submit", first.json["id"])]

    other_params = post_job(client, token, headers=key, params='{"sleep_s": 2}')
    assert (
        other_params.status_code == 422
        and "different file or parameters" in other_params.json["error"]
    )
    other_file = post_job(client, token, headers=key, body=VIDEO + b"x", params='{"sleep_s": 1}')
    assert other_file.status_code == 422
    # Keys are per token: another token's same key is its own.
    second, _ = make_token(runner, "other-client")
    assert post_job(client, second, headers=key).json["id"] != first.json["id"]
    assert job_count(app) == 2


def test_a_request_refused_before_its_job_gives_its_key_back(app, client, runner):
    token, _ = make_token(runner, "fixer")
    key = {"Idempotency-Key": "k1"}
    bad = post_job(client, token, headers=key, params='{"sleep_s": "soon"}')
    assert bad.status_code == 400
    fixed = post_job(client, token, headers=key, params='{"sleep_s": 1}')
    assert fixed.status_code == 201


@pytest.mark.parametrize(
    ("header", "words"),
    [("wait=61", "1 to 60"), ("wait=soon", "whole number"), ("wait=0", "1 to 60")],
)
def test_prefer_wait_outside_1_to_60_is_refused(app, client, runner, header, words):
    token, _ = make_token(runner, "waiter")
    answer = post_job(client, token, headers={"Prefer": header})
    assert answer.status_code == 400 and words in answer.json["error"]
    assert job_count(app) == 0


def test_webhooks_need_a_named_token_and_known_events(app, client, runner):
    plain = post_job(client, API_TOKEN, webhook="http://127.0.0.1:9/hook")
    assert plain.status_code == 400 and "named token" in plain.json["error"]
    token, _ = make_token(runner, "hooked")
    unknown = post_job(
        client, token, webhook="http://127.0.0.1:9/hook", webhook_events_filter="finished"
    )
    assert unknown.status_code == 400 and "start, progress, completed" in unknown.json["error"]
    alone = post_job(client, token, webhook_events_filter="start")
    assert alone.status_code == 400
    ok = post_job(client, token, webhook="http://127.0.0.1:9/hook")
    assert ok.status_code == 201  # http to this machine is fine in development
    assert job_count(app) == 1


@pytest.fixture
def production_app(settings, enqueued):
    settings = settings.replace(
        app_env="production",
        secret_key="a-real-secret-key-0123456789abcdef",
        admin_password="a-real-admin-password",
    )
    app = create_app(settings, celery_overrides={"broker_url": "memory://"})
    services_of(app).enqueue = lambda name, *args, countdown=None: enqueued.append((name, *args))
    yield app
    app.extensions["db"].engine.dispose()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://localhost:8443/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:10.0.0.1]/hook", "private"),
        ("http://93.184.215.14/hook", "https"),
    ],
)
def test_production_refuses_webhooks_to_inward_addresses(production_app, url, why):
    client = production_app.test_client()
    runner = production_app.test_cli_runner()
    token, _ = make_token(runner, "prod-client")
    refused = post_job(client, token, webhook=url)
    assert refused.status_code == 400 and why in refused.json["error"]
    assert job_count(production_app) == 0


def test_the_job_page_shows_its_owner_how_to_read_it_from_a_program(app, client, runner):
    from tests.app.test_pages_and_api import only_job, upload

    assert upload(client).status_code == 303
    job = only_job(app)
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert f"curl http://127.0.0.1:5999/jobs/{job.id}.json" in page
    assert f'"http://127.0.0.1:5999/jobs/{job.id}.json"' in page  # the requests example
    # Someone else with the link sees the job, not the owner's how-to.
    other = app.test_client().get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "from-a-program" not in other


def test_client_webhook_deliveries_are_listed_for_the_api_and_an_admin(
    app, client, runner, enqueued
):
    from tests.app.conftest import csrf_token, login_admin
    from tests.app.test_pages_and_api import sent, webhook

    token, _ = make_token(runner, "hooked")
    created = post_job(client, token, webhook="http://127.0.0.1:9/hook")
    with app.app_context():
        from app.db import get_session

        job = get_session().get(Job, created.json["id"])
    job = sent(app, job)
    done = webhook(client, job, {"id": "rp-1", "status": "COMPLETED", "output": {"x": 1}})
    assert done.json["outcome"] == "applied"
    auth = {"Authorization": f"Bearer {token}"}
    (delivery,) = client.get(f"/api/jobs/{job.id}/webhooks", headers=auth).json["deliveries"]
    assert delivery["event"] == "completed" and delivery["state"] == "pending"
    assert ("tasks.deliver_webhook", delivery["id"]) in enqueued
    # Another token cannot see or redeliver them.
    second, _ = make_token(runner, "nosy")
    assert (
        client.get(
            f"/api/jobs/{job.id}/webhooks", headers={"Authorization": f"Bearer {second}"}
        ).status_code
        == 404
    )
    missing = client.post(f"/api/jobs/{job.id}/webhooks/msg_nope/redeliver", headers=auth)
    assert missing.status_code == 404

    login_admin(client)
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert delivery["id"] in page and "webhook-deliveries" in page
    assert 'by API token <b id="token-name">hooked</b>' in page
    assert f"http://127.0.0.1:5999/api/jobs/{job.id}" in page and "Bearer $TOKEN" in page
    assert token not in page
    # The page's Redeliver button queues the same delivery again.
    enqueued.clear()
    action = f"/jobs/{job.id}/webhooks/{delivery['id']}/redeliver"
    assert action in page
    again = client.post(action, data={"csrf_token": csrf_token(client, f"/jobs/{job.id}")})
    assert again.status_code == 303 and enqueued == [("tasks.deliver_webhook", delivery["id"])]
    stranger = app.test_client()
    refused = stranger.post(action, data={"csrf_token": csrf_token(stranger, "/")})
    assert refused.status_code == 403


def test_the_admin_dashboard_lists_named_tokens_with_their_use(app, client, runner):
    from tests.app.conftest import login_admin

    token, _ = make_token(runner, "nightly-batch", "--max-jobs-per-day", "50")
    assert post_job(client, token).status_code == 201
    login_admin(client)
    page = client.get("/admin/").get_data(as_text=True)
    table = page[page.index('id="api-tokens"') :]
    assert "nightly-batch" in table and "50/day" in table and "<td>1</td>" in table
    assert token not in page


def test_a_replayed_request_stores_no_second_file(app, client, runner, settings):
    from tests.app.conftest import storage_files

    token, _ = make_token(runner, "careful")
    key = {"Idempotency-Key": "file-once"}
    assert post_job(client, token, headers=key).status_code == 201
    stored = storage_files(settings)
    assert post_job(client, token, headers=key).headers["Idempotent-Replayed"] == "true"
    assert storage_files(settings) == stored


def test_each_delivery_checks_the_address_again(production_app):
    """A job made while its webhook's name was public, delivered after it points inward
    (DNS rebinding): the attempt is refused and recorded, nothing is sent."""
    from app.clients import tokens, webhooks
    from app.db import get_session
    from app.models import WebhookMessage
    from app.services import services

    with production_app.app_context():
        session = get_session()
        made = tokens.create(session, services().settings.secret_key, "rebound")
        job = Job(pipeline="echo", params={}, owner=tokens.owner_of(made.row), status="COMPLETED")
        session.add(job)
        session.commit()
        session.add(
            WebhookMessage(
                id="msg_rebound",
                job_id=job.id,
                event="completed",
                body="{}",
                url="https://localhost/hook",
            )
        )
        session.commit()
        outcome = webhooks.deliver(session, "msg_rebound", services())
        message = session.get(WebhookMessage, "msg_rebound")
        assert message.state == "failed" and "failed for good" in outcome
        (attempt,) = message.attempts
        assert attempt.status_code is None and "loopback" in attempt.error


def test_every_openapi_operation_has_an_id_a_tag_and_the_webhook_is_described(client):
    from openapi_spec_validator import validate

    doc = client.get("/api/openapi.json").json
    validate(doc)
    operations = [op for path in doc["paths"].values() for op in path.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)) and all(op["tags"] for op in operations)
    assert {"create_job", "get_job", "list_job_webhooks", "redeliver_job_webhook"} <= set(ids)
    event = doc["webhooks"]["jobEvent"]["post"]
    assert event["requestBody"]["content"]["application/json"]["examples"]
    assert {p["name"] for p in event["parameters"]} == {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
    create = doc["paths"]["/api/jobs"]["post"]
    assert {p["name"] for p in create["parameters"]} == {"Idempotency-Key", "Prefer"}
    assert "429" in create["responses"] and "422" in create["responses"]


def _certificate(tmp_path, name: str) -> tuple[str, str]:
    """A self-signed certificate for ``name`` (its own CA), with its key."""
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(cert), str(key)


@pytest.mark.parametrize(
    ("certified", "delivered"), [("localhost", True), ("elsewhere.test", False)]
)
def test_https_deliveries_go_to_the_checked_address_and_verify_the_name(
    app, settings, tmp_path, certified, delivered
):
    """The attempt connects to the address it checked, while TLS still checks the
    certificate against the URL's name: a certificate for another name is refused."""
    import http.server
    import ssl
    import threading

    from standardwebhooks.webhooks import Webhook

    from app.clients import tokens, webhooks
    from app.db import get_session
    from app.models import WebhookMessage
    from app.services import services, services_of

    cert, key = _certificate(tmp_path, certified)
    seen: list[tuple[dict, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    own = services_of(app).replace(settings=settings.replace(client_webhook_ca_bundle=cert))
    app.extensions["services"] = own
    try:
        with app.app_context():
            session = get_session()
            made = tokens.create(session, settings.secret_key, "tls-client")
            job = Job(
                pipeline="echo", params={}, owner=tokens.owner_of(made.row), status="COMPLETED"
            )
            session.add(job)
            session.commit()
            session.add(
                WebhookMessage(
                    id="msg_tls",
                    job_id=job.id,
                    event="completed",
                    body='{"type":"job.completed"}',
                    url=f"https://localhost:{port}/hook",
                )
            )
            session.commit()
            webhooks.deliver(session, "msg_tls", services())
            message = session.get(WebhookMessage, "msg_tls")
            (attempt,) = message.attempts
            if delivered:
                assert message.state == "delivered" and attempt.status_code == 204
                headers, body = seen[0]
                assert headers["Host"] == f"localhost:{port}"
                assert Webhook(made.webhook_secret).verify(body, headers)["type"] == "job.completed"
            else:
                assert attempt.status_code is None and "SSLError" in attempt.error
                assert seen == [] and message.state == "pending"  # retried later
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_days_spend_over_the_limit_answers_429_until_midnight_utc(app, client, runner):
    token, _ = make_token(runner, "thrifty", "--max-spend-per-day", "0.05")
    first = post_job(client, token)
    assert first.status_code == 201
    with app.app_context():
        from app.db import get_session

        session = get_session()
        session.get(Job, first.json["id"]).cost_usd = 0.06
        session.commit()
    over = post_job(client, token)
    assert over.status_code == 429 and over.json["limit"] == "max_spend_per_day"
    assert "$0.0600" in over.json["error"] and over.json["resets_at"].endswith("T00:00:00+00:00")


@pytest.mark.parametrize(
    ("headers", "fields", "words"),
    [
        ({"Idempotency-Key": "k" * 256}, {}, "Idempotency-Key must be"),
        ({"Idempotency-Key": " "}, {}, "Idempotency-Key must be"),
        ({}, {"webhook": "https://example.com/" + "a" * 2100}, "longer than 2048"),
        ({}, {"webhook": "ftp://example.com/hook"}, "http URL with a host"),
        ({}, {"webhook": "http://no-such-host.invalid/hook"}, "does not resolve"),
    ],
)
def test_bad_keys_and_webhooks_get_a_400_and_change_nothing(
    app, client, runner, headers, fields, words
):
    token, _ = make_token(runner, "careless")
    answer = post_job(client, token, headers=headers, **fields)
    assert answer.status_code == 400 and words in answer.json["error"], answer.json
    assert job_count(app) == 0
