"""Security findings of issue 9, each as what a browser or an attacker would see."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from app.models import Job
from tests.app.conftest import csrf_token

SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg"><script>'
    b"fetch('/admin/').then(r => r.text()).then(t => document.title = t)"
    b"</script></svg>"
)


def _upload(client, body: bytes, name: str):
    token = csrf_token(client)
    data = {"csrf_token": token, "pipeline": "echo", "file": (io.BytesIO(body), name)}
    return client.post("/jobs", data=data, content_type="multipart/form-data")


def _input_link(app, settings) -> str:
    with app.app_context():
        from app.db import get_session
        from app.extensions import get_storage

        job = get_session().scalars(select(Job)).one()
        url = get_storage().get_url(job.input_key, 60)
    return url.removeprefix(settings.public_base_url)


def _get(client, url: str, **kwargs):
    response = client.get(url, **kwargs)
    response.get_data()
    response.close()
    return response


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("evil.svg", SVG),
        ("page.html", b"<html><script>alert(1)</script></html>"),
        ("page.xhtml", b"<html xmlns='http://www.w3.org/1999/xhtml'><script/></html>"),
    ],
)
def test_active_content_is_served_as_an_inert_attachment(app, client, settings, name, body):
    settings = settings.replace(allowed_upload_types=("*/*",))
    app.extensions["settings"] = settings
    assert _upload(client, body, name).status_code == 303
    response = _get(client, _input_link(app, settings))
    assert response.status_code == 200 and response.data == body
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    csp = response.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("clip.mp4", "video/mp4"), ("photo.png", "image/png"), ("photo.jpg", "image/jpeg")],
)
def test_media_the_page_shows_stays_inline_but_sandboxed(app, client, settings, name, content_type):
    assert _upload(client, b"\x00\x00\x00\x18ftypmp42" + b"x" * 100, name).status_code == 303
    response = _get(client, _input_link(app, settings), headers={"Range": "bytes=0-3"})
    assert response.status_code == 206
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Disposition"].startswith("inline")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/admin/login", "/jobs", "/no-such-page"])
def test_no_page_can_be_framed(client, path):
    response = client.get(path)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
