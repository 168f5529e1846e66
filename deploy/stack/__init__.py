"""The stack's processes on this machine: Redis, moto's S3 server, gunicorn, Celery, make run.

One home for how each process is started (``commands``: the command lines ``Procfile`` and
``Procfile.dev`` spell too, and a test holds them to it), how a process group is run and
stopped (``processes``), ports (``net``), the starters that tie them together
(``services``) and the local GPU endpoint as a child process (``local_endpoint``).
``app.devserver`` (``make run``), the tests' fixtures (``tests/support``) and the
benchmarks (``python -m bench``) all use it. It imports nothing from ``app``, ``tasks`` or
``tests``: the web app and the Celery app are named by their import strings only.
"""
