"""The app factory: ``create_app()`` builds the web app gunicorn, the CLI and the Celery
worker use (re-exported as ``app.create_app``).

Like cookiecutter-flask's, it binds settings and services, then only calls
``register_extensions``, ``register_security_headers``, ``register_blueprints``,
``register_errorhandlers`` and ``register_commands``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from app import commands, db
from app.extensions import csrf
from app.jsonbody import BoundedJSONProvider
from app.observability import init_sentry
from app.queue import celery_init_app, sender
from app.services import Services, services_of
from app.services import init_app as init_services
from app.settings import Settings
from app.storage import make_storage, remove_orphaned_staging
from app.units import human_bytes
from app.web import admin, api, callbacks, errors, files, guards, pages, webhooks
from app.web.present import when
from app.web.uploads import UploadRequest, discard_staged
from deploy import devenv


def create_app(
    settings: Settings | None = None,
    *,
    component: str = "web",
    celery_overrides: dict[str, Any] | None = None,
) -> Flask:
    """Build the app from ``settings`` (default: the environment)."""
    if settings is None:
        # A second terminal next to `make run` (flask --app app ...) gets its stack's settings.
        devenv.load()
        settings = Settings.from_env()
    init_sentry(component, settings)
    # Templates and static files belong to the web side (app/web), not the app package root.
    app = Flask("app", template_folder="web/templates", static_folder="web/static")
    app.json = BoundedJSONProvider(app)
    app.request_class = UploadRequest
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # the session cookie bounds it; pages stay open for hours
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://"),
        TESTING=settings.app_env == "test",
    )
    db.init_app(app, settings.database_url)
    celery = celery_init_app(app, settings, celery_overrides)
    init_services(app, Services(settings, make_storage(settings), sender(app, celery)))
    register_extensions(app)
    register_security_headers(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    if settings.trusted_proxy_count:
        # Behind N proxies the peer is the nearest proxy: take the client's address (and
        # scheme) from the headers those N appended, and nothing a client wrote before them.
        n = settings.trusted_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    return app


def register_extensions(app: Flask) -> None:
    csrf.init_app(app)
    guards.init_app(app)
    app.add_template_filter(human_bytes, "human_bytes")
    app.add_template_filter(when, "when")
    # Uploads cut off by a killed web process (SIGKILL, or a deploy's SIGTERM past its
    # grace) leave their staged part behind; whoever starts next on this host removes it.
    remove_orphaned_staging(services_of(app).storage)

    @app.teardown_request
    def _discard_staged(_exc: BaseException | None) -> None:
        discard_staged(request)


# No page may be framed (clickjacking the admin's buttons); routes that set their own CSP
# (stored files: sandboxed) keep it and gain frame-ancestors.
PAGE_CSP = "frame-ancestors 'none'; base-uri 'self'; object-src 'none'; form-action 'self'"


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def _security_headers(response):
        csp = response.headers.get("Content-Security-Policy")
        if csp is None:
            response.headers["Content-Security-Policy"] = PAGE_CSP
        elif "frame-ancestors" not in csp:
            response.headers["Content-Security-Policy"] = f"{csp}; frame-ancestors 'none'"
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(pages.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(files.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(callbacks.bp)
    # Token-authenticated and machine-to-machine routes carry no browser session to forge.
    csrf.exempt(api.bp)
    csrf.exempt(files.bp)
    csrf.exempt(webhooks.bp)
    csrf.exempt(callbacks.bp)


def register_errorhandlers(app: Flask) -> None:
    errors.register(app)


def register_commands(app: Flask) -> None:
    commands.register(app)
