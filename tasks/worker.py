"""The Celery entry point: ``celery -A tasks.worker:celery_app worker`` (and ``beat``).

Flask's Celery pattern: the Flask app is built once and every task runs inside its app
context. ``create_app(component="worker")`` calls ``init_sentry("worker")`` (beat retags
itself "beat"). After a prefork fork each child drops the parent's database connections and clients.
"""

from __future__ import annotations

from celery.signals import worker_process_init

from app import create_app
from app.services import services_of

flask_app = create_app(component="worker")
celery_app = flask_app.extensions["celery"]


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    flask_app.extensions["db"].dispose()
    services_of(flask_app).reset()
