"""Extension objects, created unbound here and bound in ``create_app`` (cookiecutter-flask).

Per-process clients (settings, storage, job-API clients, Redis, the ``/status`` budget,
``enqueue``) live in ``app.services``.
"""

from __future__ import annotations

from flask_wtf import CSRFProtect

csrf = CSRFProtect()
