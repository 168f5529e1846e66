"""Issue 19: the breaker is per endpoint; a crash loop on video pauses video only, and
light keeps taking and finishing jobs."""

from __future__ import annotations

import html
import time

import pytest

from app.db import session_scope
from app.endpoints import breaker
from app.endpoints.health import refresh_snapshots
from app.lifecycle.spend import sweep
from app.services import services
from tests.tasks.conftest import stack
from tests.tasks.test_breaker import CRASHES_AT_IMPORT, PAUSED
from tests.tasks.test_endpoints import endpoints, submit

pytestmark = pytest.mark.timeout(240)


def test_a_crash_loop_on_one_endpoint_pauses_it_alone(tmp_path):
    specs = endpoints(CRASHES_AT_IMPORT, crash_loop_threshold=1000)
    with stack(tmp_path, endpoints=specs) as s:
        stuck = submit(s, "video_enhance")
        s.wait_job(stuck, "IN_QUEUE", timeout=60)
        deadline = time.monotonic() + 90
        while True:
            with s.app.app_context(), session_scope() as session:
                refresh_snapshots(session, services())
                sweep(session, services())
                video = breaker.load(session, "video")
                light = breaker.load(session, "light")
            if video.open:
                break
            assert time.monotonic() < deadline, "the video breaker did not trip"
            time.sleep(0.3)
        assert not light.open
        assert s.wait_job(stuck, "PENDING", timeout=30).diagnosis == PAUSED
        echo = submit(s, "echo")
        assert s.wait_job(echo, timeout=90).status == "COMPLETED"
        assert s.job(echo).endpoint == "light" and not (s.job(echo).diagnosis or "")
        assert PAUSED in html.unescape(s.page(stuck))
