"""Security findings of issue 9, each as what a browser or an attacker would see."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from markupsafe import escape
from sqlalchemy import select

from app.models import Job
from app.services import services_of
from tests.app.conftest import ADMIN_PASSWORD, csrf_token, storage_files

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
        from app.services import services

        job = get_session().scalars(select(Job)).one()
        url = services().storage.get_url(job.input_key, 60)
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
    services_of(app).settings = settings
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
    # Every address that guessed is now held to the account's limit, even with the password.
    assert _login(app.test_client(), ADMIN_PASSWORD, addr="10.1.0.7").status_code == 429


def test_strangers_guessing_cannot_lock_the_admin_out(app):
    """Issue 16: the account-wide limit used to answer 429 to the real admin too."""
    for n in range(40):
        _login(app.test_client(), "guess", addr=f"10.1.0.{n}")
    assert _login(app.test_client(), ADMIN_PASSWORD, addr="10.2.0.1").status_code == 303


def _proxied_login(client, password: str, client_addr: str):
    token = csrf_token(client, "/admin/login")
    return client.post(
        "/admin/login",
        data={"password": password, "csrf_token": token, "next": "/admin/"},
        headers={"X-Forwarded-For": client_addr},
        environ_overrides={"REMOTE_ADDR": "10.0.0.254"},  # the proxy
    )


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(settings):
    from app import create_app

    app = create_app(
        settings.replace(trusted_proxy_count=1), celery_overrides={"broker_url": "memory://"}
    )
    try:
        guesser = app.test_client()
        for _ in range(10):
            assert _proxied_login(guesser, "guess", "203.0.113.5").status_code == 401
        assert _proxied_login(guesser, ADMIN_PASSWORD, "203.0.113.5").status_code == 429
        admin = app.test_client()
        assert _proxied_login(admin, ADMIN_PASSWORD, "198.51.100.7").status_code == 303
    finally:
        app.extensions["db"].engine.dispose()


def test_without_a_trusted_proxy_a_forged_forwarded_for_changes_nothing(app):
    guesser = app.test_client()
    for n in range(10):
        assert _proxied_login(guesser, "guess", f"203.0.113.{n}").status_code == 401
    assert _proxied_login(guesser, ADMIN_PASSWORD, "203.0.113.99").status_code == 429


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
    services_of(app).settings = settings.replace(admin_session_hours=0)
    assert _login(client, ADMIN_PASSWORD).status_code == 303
    assert _get(client, "/admin/").status_code == 302


PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "a-long-random-production-secret-key",
    "ADMIN_PASSWORD": "a sturdy pass phrase",
}


@pytest.mark.parametrize(
    "password",
    [
        "1",
        "short-pass1",
        "changeme",
        "administrator",
        "aaaaaaaaaaaa",
        "abcdefghijkl",
        "abababababababab",
        "aZaZaZaZaZaZaZaZ",
        "123456789012345678",
    ],
)
def test_a_weak_admin_password_is_refused_outside_development(password):
    from app.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="ADMIN_PASSWORD"):
        Settings.from_env({**PRODUCTION, "ADMIN_PASSWORD": password})
    Settings.from_env(PRODUCTION)
    Settings.from_env({**PRODUCTION, "APP_ENV": "development", "ADMIN_PASSWORD": password})


@pytest.mark.parametrize(
    "key", ["aaaaaaaaaaaaaaaa", "0123456789abcdef", "abcabcabcabcabcabcabc", "x" * 64]
)
def test_a_guessable_secret_key_is_refused_outside_development(key):
    from app.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="SECRET_KEY"):
        Settings.from_env({**PRODUCTION, "SECRET_KEY": key})


@pytest.mark.parametrize("_", range(20))
def test_generated_secrets_pass_the_strength_rule(_):
    import secrets

    from app.settings import Settings

    Settings.from_env(
        {
            **PRODUCTION,
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ADMIN_PASSWORD": secrets.token_urlsafe(18),
        }
    )


def test_the_database_file_is_owner_only(tmp_path):
    from sqlalchemy import text

    from app.db import make_engine

    path = tmp_path / "instance" / "app.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x TEXT)"))
        conn.execute(text("INSERT INTO t VALUES ('token')"))
        for suffix in ("", "-wal", "-shm"):
            assert (path.parent / (path.name + suffix)).stat().st_mode & 0o777 == 0o600
    engine.dispose()


def test_the_local_endpoint_store_is_owner_only(tmp_path):
    from deploy.local.store import Store

    path = tmp_path / "state" / "jobs.db"
    store = Store(path)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        assert (path.parent / "jobs.db-wal").stat().st_mode & 0o777 == 0o600
    finally:
        store.close()


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("report\u202egnp.mp4", "report\ufffdgnp.mp4"),  # right-to-left override
        ("a\u2066b\u2069c.mp4", "a\ufffdb\ufffdc.mp4"),  # bidi isolates
        ("zero\u200bwidth.mp4", "zero\ufffdwidth.mp4"),
        ("tab\tand\x1b[31mred.mp4", "tab\ufffdand\ufffd[31mred.mp4"),
        ("caf\u00e9 \u65e5\u672c.mp4", "caf\u00e9 \u65e5\u672c.mp4"),  # letters stay
    ],
)
def test_a_file_name_is_shown_with_its_control_characters_neutralised(app, client, name, shown):
    from tests.app.test_pages_and_api import only_job

    assert _upload(client, b"\x00\x00\x00\x18ftypmp42", name).status_code == 303
    job = only_job(app)
    assert job.input_name == shown
    for page in (f"/jobs/{job.id}", "/jobs"):
        text = client.get(page).text
        assert escape(shown) in text
        assert not any(ch in text for ch in "\u202e\u2066\u2069\u200b\x1b")


class _CountingBody(io.BytesIO):
    """A request body that remembers how much of it the server read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        chunk = super().readline(size)
        self.consumed += len(chunk)
        return chunk


def test_a_post_without_a_form_token_is_refused_before_its_body_is_read(app, settings, enqueued):
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    body = _CountingBody(head + b"x" * 200_000 + f"\r\n--{boundary}--\r\n".encode())
    response = app.test_client().post(
        "/jobs",
        input_stream=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        content_length=len(body.getvalue()),
    )
    assert response.status_code == 400 and "security token" in response.text
    assert body.consumed == 0
    assert storage_files(settings) == [] and enqueued == []


def test_staged_parts_of_dead_requests_are_removed_at_start_up(app, settings):
    from app import create_app
    from app.storage import staging_prefix

    staging = Path(settings.storage_dir) / ".staging"
    mine = staging / f"{staging_prefix()}live"
    dead_prefix = staging_prefix().rsplit("-", 2)[0] + f"-{_dead_pid()}-"
    orphan = staging / f"{dead_prefix}killed"
    # A dead writer whose pid was reused by a live process: its start time differs.
    reused = staging / (staging_prefix().rsplit(".", 1)[0] + ".1-reused")
    for path in (mine, orphan, reused):
        path.write_bytes(b"partial upload")
    create_app(settings, celery_overrides={"broker_url": "memory://"}).extensions[
        "db"
    ].engine.dispose()
    assert mine.exists() and not orphan.exists() and not reused.exists()


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_result_put_after_the_job_ended_cannot_replace_the_result(app, client, settings):
    from tests.app.test_pages_and_api import only_job, sent, upload

    upload(client)
    job = sent(app, only_job(app), "rp-1")
    with app.app_context():
        from app.services import services

        put = services().storage.put_url(job.output_key, "video/mp4", 60)
        get = services().storage.get_url(job.output_key, 60)
    put, get = (u.removeprefix(settings.public_base_url) for u in (put, get))
    assert client.put(put, data=b"the real result").status_code == 201
    done = {"id": "rp-1", "status": "COMPLETED", "output": {"output": {"url": "x"}}}
    client.post(f"/webhooks/{job.id}/{job.webhook_token}", json=done)
    assert only_job(app).status == "COMPLETED"
    late = client.put(put, data=b"<svg onload=alert(1)>")
    assert late.status_code == 409 and "already ended" in late.json["error"]
    assert _get(client, get).data == b"the real result"


def test_an_oversized_result_is_called_too_large(app, client, settings):
    from tests.app.test_pages_and_api import only_job, sent, upload

    upload(client)
    job = sent(app, only_job(app), "rp-1")
    with app.app_context():
        from app.services import services

        put = services().storage.put_url(job.output_key, "video/mp4", 60)
    answer = client.put(put.removeprefix(settings.public_base_url), data=b"x" * (300 * 1024))
    assert answer.status_code == 413
    assert answer.json["error"] == (
        "the result is too large: the app accepts results up to 256 KiB (MAX_UPLOAD_BYTES)"
    )


def test_limits_are_printed_in_the_unit_that_fits(client):
    from app.units import human_bytes

    assert "up to 256 KiB" in client.get("/").text
    assert [human_bytes(n) for n in (1, 900, 256 * 1024, 2 * 1024**3, 1536 * 1024**2)] == [
        "1 byte",
        "900 bytes",
        "256 KiB",
        "2 GiB",
        "1.5 GiB",
    ]


def test_anonymous_uploads_are_rate_limited(app, client, settings, enqueued):
    services_of(app).settings = settings.replace(upload_rate_per_hour=2)
    assert _upload(client, b"\x00\x00\x00\x18ftypmp42", "a.mp4").status_code == 303
    assert _upload(client, b"\x00\x00\x00\x18ftypmp42", "b.mp4").status_code == 303
    refused = _upload(client, b"\x00\x00\x00\x18ftypmp42", "c.mp4")
    assert refused.status_code == 429
    assert "too many uploads from your address (at most 2 an hour)" in refused.text
    assert len(enqueued) == 2


# Issue 16, finding 2: one place refuses, before the body, every post that cannot succeed.
def _multipart(size: int) -> tuple[_CountingBody, str]:
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    body = _CountingBody(head + b"x" * size + f"\r\n--{boundary}--\r\n".encode())
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("load_form_first", [False, True], ids=["no session", "session"])
def test_a_made_up_token_header_does_not_let_an_upload_reach_the_disk(
    app, settings, enqueued, load_form_first
):
    client = app.test_client()
    if load_form_first:
        csrf_token(client)  # a real session with a real token; the header holds another
    body, content_type = _multipart(200_000)
    response = client.post(
        "/jobs",
        input_stream=body,
        content_type=content_type,
        content_length=len(body.getvalue()),
        headers={"X-CSRFToken": "IjAwMDAi.made-up.token"},
    )
    assert response.status_code == 400 and "security token" in response.text
    assert response.headers["Connection"] == "close"
    assert body.consumed == 0
    assert storage_files(settings) == [] and enqueued == []


def test_a_real_token_header_is_accepted(app, client, enqueued):
    token = csrf_token(client)
    data = {"pipeline": "echo", "file": (io.BytesIO(b"\x00\x00\x00\x18ftypmp42"), "a.mp4")}
    response = client.post("/jobs", data=data, headers={"X-CSRFToken": token})
    assert response.status_code == 303, response.text


@pytest.mark.parametrize("path", ["/admin/login", "/admin/logout", "/jobs/{job}/cancel"])
def test_a_small_form_refuses_a_large_body_before_reading_it(app, client, path):
    from tests.app.test_pages_and_api import only_job, upload

    upload(client)
    path = path.format(job=only_job(app).id)
    csrf_token(client, "/admin/login")
    body, content_type = _multipart(1_000_000)
    response = client.post(
        path, input_stream=body, content_type=content_type, content_length=len(body.getvalue())
    )
    assert response.status_code == 413 and "larger than this form sends" in response.text
    assert body.consumed == 0


def test_a_small_form_cuts_off_a_body_without_a_length(app, client):
    csrf_token(client, "/admin/login")
    body, content_type = _multipart(1_000_000)
    response = client.post(
        "/admin/login",
        input_stream=body,
        content_type=content_type,
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert body.consumed < 200_000


def test_admin_login_and_logout_posts_are_rate_limited_per_address(app, client):
    from app.web.guards import ADMIN_FORM_POSTS_PER_5MIN

    token = csrf_token(client, "/admin/login")
    for _ in range(ADMIN_FORM_POSTS_PER_5MIN):
        assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 303
    refused = client.post("/admin/logout", data={"csrf_token": token})
    assert refused.status_code == 429 and "too many requests" in refused.text
    other = app.test_client()
    token = csrf_token(other, "/admin/login")
    answer = other.post(
        "/admin/logout", data={"csrf_token": token}, environ_overrides={"REMOTE_ADDR": "10.9.9.9"}
    )
    assert answer.status_code == 303
