"""Retention: files of old finished jobs are deleted; the job row stays and says so."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

from app.models import Job, Status, utcnow
from tests.app.conftest import csrf_token


def test_cleanup_deletes_old_files_and_keeps_recent_ones(app, client, runner, settings):
    token = csrf_token(client)
    for name in ("old.mp4", "new.mp4"):
        data = {"csrf_token": token, "file": (io.BytesIO(b"video-bytes"), name)}
        assert (
            client.post("/jobs", data=data, content_type="multipart/form-data").status_code == 303
        )
    with app.app_context():
        from app.db import get_session

        session = get_session()
        jobs = {j.input_name: j for j in session.query(Job).all()}
        for job in jobs.values():
            job.status = Status.FAILED
            job.finished_at = utcnow()
        jobs["old.mp4"].finished_at = utcnow() - timedelta(days=settings.retention_days + 1)
        session.commit()
        old, new = jobs["old.mp4"], jobs["new.mp4"]
    result = runner.invoke(args=["admin", "cleanup"])
    assert result.exit_code == 0 and "1 file(s) of 1 job(s)" in result.output
    assert not (Path(settings.storage_dir) / old.input_key).exists()
    assert (Path(settings.storage_dir) / new.input_key).exists()
    answer = client.post(f"/jobs/{old.id}/retry", data={"csrf_token": token}, follow_redirects=True)
    assert "deleted by retention" in answer.get_data(as_text=True)
