"""Errors reach Sentry (a local sink) with secrets scrubbed; logs never carry secrets."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from deploy.stack.processes import ROOT
from tests.support.sentry_sink import SentrySink

pytestmark = pytest.mark.timeout(60)

SECRETS = {
    "RUNPOD_API_KEY": "rpa_LIVEKEY0123456789abcdef",
    "SECRET_KEY": "flask-secret-9f8e7d6c5b4a",
    "ADMIN_PASSWORD": "admin-password-5e4d3c2b",
    "AWS_SECRET_ACCESS_KEY": "awsSecretAccessKeyXYZ987654",
    "API_TOKENS": "script-token-aaaa1111,script-token-bbbb2222",
}

# A failure as code in this project meets one: the API key sits in a local variable and in
# the message, a signed URL and a bearer header are in the text, and the error is logged too.
PROGRAM = textwrap.dedent(
    """
    import logging, os, sys
    import sentry_sdk
    from app.observability import init_sentry

    on = init_sentry(sys.argv[1])
    print("sentry:", on, flush=True)
    api_key = os.environ["RUNPOD_API_KEY"]
    headers = {"Authorization": "Bearer " + os.environ["API_TOKENS"].split(",")[1]}
    url = "http://127.0.0.1/files/in.mp4?expires=1&sig=deadbeefcafe0123"
    try:
        raise RuntimeError(f"POST /run refused for key {api_key} at {url} with {headers}")
    except RuntimeError:
        logging.getLogger("tasks.submit").exception("submit failed, key %s", api_key)
    sentry_sdk.flush(timeout=10)
    """
)


def _run(component: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, component],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_error_reaches_sentry_with_secrets_scrubbed():
    with SentrySink() as sink:
        done = _run("worker", {**SECRETS, "SENTRY_DSN": sink.dsn, "APP_ENV": "production"})
        assert "sentry: True" in done.stdout
        events = sink.wait_for(
            lambda evs: [e for e in evs if e.get("exception")], "with an exception"
        )
        event = events[0]
        assert event["tags"]["component"] == "worker"
        assert event["environment"] == "production"
        assert event["exception"]["values"][-1]["type"] == "RuntimeError"
        raw = sink.raw().decode()
        for secret in [*SECRETS.values(), "deadbeefcafe0123"]:
            for part in secret.split(","):
                assert part not in raw, f"{part} reached Sentry"
        assert "[Filtered]" in json.dumps(event)
        # The error is in the log as well, tagged with its component, secrets redacted.
        assert "[worker] tasks.submit: submit failed, key [Filtered]" in done.stderr
        for secret in SECRETS.values():
            assert secret.split(",")[0] not in done.stderr


def test_without_dsn_nothing_is_sent_and_errors_go_to_the_log():
    with SentrySink() as sink:
        done = _run("web", dict(SECRETS))
        assert "sentry: False" in done.stdout
        assert "[web] tasks.submit: submit failed" in done.stderr
        assert "RuntimeError" in done.stderr
        assert sink.envelopes == []
