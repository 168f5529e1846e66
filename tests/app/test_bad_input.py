"""Bad input, table-driven: each request gets a clear 4xx and changes nothing (invariant 8)."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from app import signing
from app.models import Job
from tests.app.conftest import API_TOKEN, csrf_token, storage_files

VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"x" * 2000


@dataclass
class Case:
    id: str
    method: str
    path: str  # may contain {job}, {token}, {sig}
    status: int
    says: str  # words the answer must contain
    data: Any = None
    csrf: bool = True
    headers: dict | None = None
    query: dict | None = None


def _file(name: str = "clip.mp4", body: bytes = VIDEO):
    return (body, name)  # made a stream per request: the table is reused per backend


def _upload(**fields):
    return {"pipeline": "echo", "file": _file(), **fields}


AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
CASES = [
    Case(
        "oversized upload",
        "POST",
        "/jobs",
        413,
        "larger than the limit",
        data={"file": _file(body=b"x" * (256 * 1024 + 10))},
    ),
    Case("disallowed type", "POST", "/jobs", 415, "not accepted", data={"file": _file("a.txt")}),
    Case("missing file", "POST", "/jobs", 400, "no file", data={"pipeline": "echo"}),
    Case("empty file", "POST", "/jobs", 400, "empty", data={"file": _file(body=b"")}),
    Case(
        "bad parameter type",
        "POST",
        "/jobs",
        400,
        "must be a number",
        data=_upload(**{"param.sleep_s": "soon"}),
    ),
    Case(
        "parameter out of range",
        "POST",
        "/jobs",
        400,
        "at most",
        data=_upload(**{"param.sleep_s": "99999"}),
    ),
    Case(
        "unknown parameter",
        "POST",
        "/jobs",
        400,
        "unknown parameter",
        data=_upload(**{"param.rm_rf": "1"}),
    ),
    Case("params not JSON", "POST", "/jobs", 400, "JSON object", data=_upload(params="{oops")),
    Case("unknown pipeline", "POST", "/jobs", 400, "unknown pipeline", data=_upload(pipeline="x")),
    Case("missing CSRF token", "POST", "/jobs", 400, "security token", data=_upload(), csrf=False),
    Case(
        "forged signed URL",
        "GET",
        "/files/jobs/{job}/input/clip.mp4",
        403,
        "forbidden",
        query={"exp": "9999999999", "sig": "0" * 64},
    ),
    Case("unsigned URL", "GET", "/files/jobs/{job}/input/clip.mp4", 403, "forbidden"),
    Case(
        "expired signed URL",
        "GET",
        "/files/jobs/{job}/input/clip.mp4",
        403,
        "expired",
        query="expired",
    ),
    Case(
        "signed GET used to PUT",
        "PUT",
        "/files/jobs/{job}/output/result.mp4",
        403,
        "forbidden",
        query="get-sig",
    ),
    Case(
        "signed URL for another key",
        "GET",
        "/files/jobs/{job}/input/other.mp4",
        403,
        "forbidden",
        query="get-sig",
    ),
    Case("path traversal", "GET", "/files/jobs/{job}/../../../etc/passwd", 404, "no such"),
    Case("encoded path traversal", "GET", "/files/jobs/%2e%2e/%2e%2e/app.db", 404, "no such"),
    Case("key outside jobs/", "GET", "/files/etc/passwd", 404, "no such"),
    Case("outside jobs/", "GET", "/files/.staging/x", 404, "no such"),
    Case(
        "unknown job page", "GET", "/jobs/00000000-0000-0000-0000-000000000000", 404, "no such job"
    ),
    Case("unknown job API", "GET", "/api/jobs/nope", 404, "no job", headers=AUTH),
    Case("API without token", "GET", "/api/jobs", 401, "API token"),
    Case(
        "API wrong token",
        "POST",
        "/api/jobs",
        401,
        "API token",
        data=_upload(),
        headers={"Authorization": "Bearer wrong"},
    ),
    Case("API bad limit", "GET", "/api/jobs", 400, "limit", headers=AUTH, query={"limit": "-1"}),
    Case(
        "webhook wrong token",
        "POST",
        "/webhooks/{job}/wrong-token",
        403,
        "wrong webhook token",
        data={"status": "COMPLETED"},
    ),
    Case("webhook not JSON", "POST", "/webhooks/{job}/{token}", 400, "JSON object", data="nope"),
    Case(
        "webhook unknown status",
        "POST",
        "/webhooks/{job}/{token}",
        400,
        "unknown status",
        data={"status": "DONE"},
    ),
    Case("admin page without login", "GET", "/admin/", 302, ""),
    Case("admin purge without login", "POST", "/admin/purge", 401, "", data={}),
    Case("admin cancel without login", "POST", "/admin/jobs/{job}/cancel", 401, "", data={}),
    Case(
        "admin wrong password",
        "POST",
        "/admin/login",
        401,
        "wrong password",
        data={"password": "guess"},
    ),
    Case(
        "cancel someone else's job", "POST", "/jobs/{job}/cancel", 403, "only the person", data={}
    ),
]


@pytest.fixture
def existing_job(app, settings, client):
    """A job uploaded by another browser, with its input stored."""
    other = app.test_client()
    token = csrf_token(other)
    data = {"pipeline": "echo", "file": (io.BytesIO(VIDEO), "clip.mp4"), "csrf_token": token}
    response = other.post("/jobs", data=data)
    assert response.status_code == 303
    with app.app_context():
        from app.db import get_session

        return get_session().scalars(select(Job)).one()


def _snapshot(app, settings, enqueued):
    with app.app_context():
        from app.db import get_session

        session = get_session()
        jobs = [(j.id, j.status, j.version) for j in session.scalars(select(Job)).all()]
    return jobs, storage_files(settings), list(enqueued)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(
    case: Case, app, client, settings, enqueued, existing_job
):
    before = _snapshot(app, settings, enqueued)
    path = case.path.format(job=existing_job.id, token=existing_job.webhook_token)
    query = case.query
    key = path.removeprefix("/files/")
    if query == "expired":
        query = signing.sign(settings.secret_key, "GET", key, -10)
    elif query == "get-sig":
        query = signing.sign(
            settings.secret_key, "GET", f"jobs/{existing_job.id}/input/clip.mp4", 60
        )
    kwargs: dict[str, Any] = {"headers": case.headers or {}, "query_string": query}
    if case.path.startswith("/webhooks"):
        if isinstance(case.data, dict):
            kwargs["json"] = case.data
        else:
            kwargs["data"] = case.data
    elif case.data is not None:
        data = {
            k: (io.BytesIO(v[0]), v[1]) if isinstance(v, tuple) else v for k, v in case.data.items()
        }
        if case.csrf and case.method == "POST" and not path.startswith("/api"):
            data["csrf_token"] = csrf_token(client, "/admin/login" if "login" in path else "/")
        kwargs["data"] = data
        if any(isinstance(v, tuple) for v in data.values()):
            kwargs["content_type"] = "multipart/form-data"
    response = client.open(path, method=case.method, **kwargs)
    assert response.status_code == case.status, response.get_data(as_text=True)[:500]
    assert case.says in response.get_data(as_text=True)
    assert _snapshot(app, settings, enqueued) == before


def test_oversized_upload_without_content_length_stores_nothing(app, client, settings, enqueued):
    """A chunked body past MAX_UPLOAD_BYTES is cut off mid-stream; the staged part is removed."""
    token = csrf_token(client)
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()

    body = head + b"x" * (300 * 1024) + f"\r\n--{boundary}--\r\n".encode()
    response = client.post(
        "/jobs",
        input_stream=io.BytesIO(body),
        content_type=f"multipart/form-data; boundary={boundary}",
        # No Content-Length: the server only finds out while streaming.
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert storage_files(settings) == []
    assert enqueued == []


def test_expired_link_is_refused_even_with_a_valid_signature(app, client, settings, existing_job):
    key = existing_job.input_key
    query = signing.sign(settings.secret_key, "GET", key, 1, now=time.time() - 5)
    assert client.get(f"/files/{key}", query_string=query).status_code == 403


def test_job_count_unchanged_by_refused_uploads(app, client):
    token = csrf_token(client)
    client.post(
        "/jobs",
        data={"csrf_token": token, "file": _file("a.exe")},
        content_type="multipart/form-data",
    )
    with app.app_context():
        from app.db import get_session

        assert get_session().scalar(select(func.count()).select_from(Job)) == 0
