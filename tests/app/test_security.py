"""Security findings of issue 9, each as what a browser or an attacker would see."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from app.models import Job
from tests.app.conftest import ADMIN_PASSWORD, csrf_token

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


def _login(client, password: str, addr: str = "10.0.0.1"):
    token = csrf_token(client, "/admin/login")
    return client.post(
        "/admin/login",
        data={"password": password, "csrf_token": token, "next": "/admin/"},
        environ_overrides={"REMOTE_ADDR": addr},
    )


def test_password_guessing_is_stopped_per_client(app, client):
    for _ in range(10):
        assert _login(client, "guess").status_code == 401
    locked = _login(client, ADMIN_PASSWORD)  # even the right password: no more tries
    assert locked.status_code == 429
    assert re.search(r"too many login attempts: try again in [1-5] minutes?", locked.text)
    assert _get(client, "/admin/").status_code == 302
    other = app.test_client()  # another client is not locked out by this one
    assert _login(other, ADMIN_PASSWORD, addr="10.0.0.2").status_code == 303


def test_password_guessing_from_many_clients_is_stopped_per_account(app):
    for n in range(30):
        assert _login(app.test_client(), "guess", addr=f"10.1.0.{n}").status_code == 401
    assert _login(app.test_client(), ADMIN_PASSWORD, addr="10.2.0.1").status_code == 429


def test_a_copied_admin_cookie_stops_working_at_logout(app, client):
    assert _login(client, ADMIN_PASSWORD).status_code == 303
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    assert _get(thief, "/admin/").status_code == 200
    token = csrf_token(client, "/admin/")
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 303
    assert _get(thief, "/admin/").status_code == 302
    assert _get(client, "/admin/").status_code == 302


def test_admin_sessions_expire(app, client, settings):
    app.extensions["settings"] = settings.replace(admin_session_hours=0)
    assert _login(client, ADMIN_PASSWORD).status_code == 303
    assert _get(client, "/admin/").status_code == 302


@pytest.mark.parametrize("password", ["1", "short-pass1", "changeme", "administrator"])
def test_a_weak_admin_password_is_refused_outside_development(password):
    from app.settings import Settings, SettingsError

    env = {
        "APP_ENV": "production",
        "SECRET_KEY": "a-long-random-production-secret-key",
        "ADMIN_PASSWORD": password,
    }
    with pytest.raises(SettingsError, match="ADMIN_PASSWORD"):
        Settings.from_env(env)
    Settings.from_env({**env, "ADMIN_PASSWORD": "a sturdy pass phrase"})
