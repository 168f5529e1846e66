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


def test_cleanup_removes_files_whose_job_row_never_came_to_be(app, client, settings):
    """An upload killed between storing its file and committing its row leaves a folder."""
    import os
    import time

    from app.lifecycle.reconcile import cleanup

    token = csrf_token(client)
    data = {"csrf_token": token, "file": (io.BytesIO(b"video-bytes"), "kept.mp4")}
    assert client.post("/jobs", data=data, content_type="multipart/form-data").status_code == 303
    root = Path(settings.storage_dir) / "jobs"
    orphan = root / "0b7c0d53-0000-4000-8000-000000000000" / "input" / "cut.mp4"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half an upload")
    young = root / "0b7c0d53-0000-4000-8000-000000000001" / "input" / "now.mp4"
    young.parent.mkdir(parents=True)
    young.write_bytes(b"an upload committing right now")
    hour_ago = time.time() - 7200
    for path in (orphan, orphan.parent, orphan.parent.parent):
        os.utime(path, (hour_ago, hour_ago))
    kept = next(p for p in root.iterdir() if p.name not in (orphan.parts[-3], young.parts[-3]))
    for path in [kept, *kept.rglob("*")]:
        os.utime(path, (hour_ago, hour_ago))
    with app.app_context():
        from app.db import get_session
        from app.services import services

        result = cleanup(get_session(), services().replace(settings=settings))
    assert result["orphans"] == 1
    assert not orphan.parent.parent.exists()
    assert young.exists() and any(kept.rglob("*.mp4"))
