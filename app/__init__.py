"""The web app. ``create_app()`` (in ``app/factory.py``) is the factory gunicorn, the CLI and
the Celery worker use: ``gunicorn 'app:create_app()'``; ``flask --app app ...``;
``tasks/worker.py`` builds its Celery app from it.
"""

from app.factory import create_app

__all__ = ["create_app"]
