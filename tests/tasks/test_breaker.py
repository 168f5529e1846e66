"""Issue 19: the breaker stops jobs going to an endpoint whose workers crash-loop at import,
says why in the worker's own words, lets one probe through on resume, and never trips on a
single crash."""

from __future__ import annotations

import html
import re
import sys
import time

import pytest

from app.db import session_scope
from app.endpoints import breaker
from app.endpoints.health import refresh_snapshot
from app.lifecycle.spend import sweep
from app.services import services
from tests.tasks.conftest import stack
from tests.tasks.test_diagnosis import login_admin

pytestmark = pytest.mark.timeout(240)

# The image lacks a module its handler imports: every worker dies at start.
CRASHES_AT_IMPORT = f'{sys.executable} -I -S -c "import cv2"'
PAUSED = "paused: ModuleNotFoundError: No module named 'cv2'"


def check(s) -> breaker.State:
    """What beat does: refresh the endpoint's snapshot, then the spend sweep."""
    with s.app.app_context(), session_scope() as session:
        refresh_snapshot(session, services().settings, services().api_for("default"), 1)
        sweep(session, services())
        return breaker.load(session, "default")


def test_a_worker_crashing_at_import_trips_the_breaker_and_resume_sends_a_probe(tmp_path):
    options = {"worker_command": CRASHES_AT_IMPORT, "crash_loop_threshold": 1000}
    with stack(tmp_path, endpoint_options=options) as s:
        first = s.upload()
        s.wait_job(first, "IN_QUEUE", timeout=60)
        deadline = time.monotonic() + 90
        while not (state := check(s)).open:
            assert time.monotonic() < deadline, "the breaker did not trip"
            time.sleep(0.3)
        assert len(state.seen) == 3, "tripped at the third crash, not before nor long after"
        assert state.cause == "ModuleNotFoundError: No module named 'cv2'"
        # The queued job came back from the endpoint and waits here, with the words.
        job = s.wait_job(first, "PENDING", timeout=30)
        assert job.diagnosis == PAUSED
        assert PAUSED in html.unescape(s.page(first))
        later = s.upload()
        s.worker.process.wait_until(lambda: s.job(later).diagnosis == PAUSED, "held", 60)
        assert not s.job(later).attempts, "nothing is sent while the breaker is open"
        health = s.endpoint.get("health").json()["jobs"]
        assert health["inQueue"] == 0 and health["inProgress"] == 0
        # The banner says the same, with the fix.
        login_admin(s)
        admin = s.browser.get(s.web.url("/admin/"), timeout=30).text
        banner = html.unescape(admin)
        assert "Endpoint default is paused: ModuleNotFoundError: No module named 'cv2'" in banner
        assert "flask admin resume default" in banner and "requirements" in banner
        resumed = s.app.test_cli_runner().invoke(args=["admin", "resume", "default"])
        assert resumed.exit_code == 0 and f"probe job {first}" in resumed.output
        # The probe goes to the endpoint; the other job waits for it.
        probe = s.wait_job(first, "IN_QUEUE", timeout=60)
        assert probe.runpod_id and len(probe.attempts) == 2
        s.worker.process.wait_until(
            lambda: (s.job(later).diagnosis or "").startswith("paused: waiting for the probe"),
            "the second job waiting for the probe",
            60,
        )
        assert not s.job(later).attempts
        again = s.app.test_cli_runner().invoke(args=["admin", "resume", "default"])
        assert again.exit_code != 0 and "is not open" in again.output


def test_one_crash_alone_does_not_trip_it(tmp_path):
    marker = tmp_path / "crashed-once"
    once = (
        f"sh -c 'if [ -e {marker} ]; then exec {sys.executable} -u -m gpu_worker; "
        f'else touch {marker}; exec {sys.executable} -I -S -c "import cv2"; fi\''
    )
    with stack(tmp_path, endpoint_options={"worker_command": once}) as s:
        job = s.upload()
        for _ in range(20):
            state = check(s)
            if s.job(job).status == "COMPLETED":
                break
            time.sleep(0.3)
        assert s.wait_job(job, "COMPLETED").status == "COMPLETED"
        state = check(s)
        assert marker.exists() and not state.open
        assert re.search(r"\bpaused\b", s.page(job)) is None
