"""Issue 19: when the breaker stops an endpoint, a Sentry event says why and the fix."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from deploy.stack.processes import ROOT
from tests.support.sentry_sink import SentrySink

pytestmark = pytest.mark.timeout(60)

# The breaker as beat's tasks.spend trips it, in a process with Sentry on.
PROGRAM = textwrap.dedent(
    """
    import sys
    import sentry_sdk
    from app import create_app
    from app.db import session_scope
    from app.endpoints import breaker
    from app.migrate import upgrade
    from app.settings import Settings

    settings = Settings.from_env()
    upgrade(settings.database_url)
    app = create_app(settings)
    with app.app_context(), session_scope() as session:
        snapshot = {"workers": {"workers": [
            {"id": f"w{i}", "state": "exited", "exitCode": 1,
             "logTail": ["Traceback (most recent call last):",
                         "ModuleNotFoundError: No module named 'cv2'"]}
            for i in range(3)
        ]}, "health": {"jobs": {"inQueue": 1, "inProgress": 0}, "workers": {}}}
        state = breaker.observe(session, settings, snapshot, "default")
        print("open:", state is not None and state.open, flush=True)
    sentry_sdk.flush(timeout=10)
    """
)


def test_a_tripped_breaker_sends_one_sentry_event_with_the_cause_and_fix(tmp_path):
    with SentrySink() as sink:
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "APP_ENV": "test",
            "SENTRY_DSN": sink.dsn,
            "DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
            "STORAGE_DIR": str(tmp_path / "storage"),
        }
        done = subprocess.run(
            [sys.executable, "-c", PROGRAM],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "open: True" in done.stdout, done.stderr
        (event,) = sink.wait_for(lambda evs: [e for e in evs if e.get("message")], "a message")
        message = event["message"] if isinstance(event["message"], str) else str(event["message"])
        assert "breaker open for endpoint default" in message
        assert "ModuleNotFoundError: No module named 'cv2'" in message
        assert "flask admin resume" in message and event["level"] == "error"
        assert event["tags"]["endpoint"] == "default"
