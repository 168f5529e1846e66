"""Celery tasks: submit, poll, cancel, reconcile, cleanup (``tasks.worker:celery_app``)."""
