"""The stack's processes on this machine: Redis, moto's S3 server, gunicorn, Celery, the devserver.

One home for how each process is started (``commands``: the command lines ``Procfile`` and
``Procfile.dev`` spell too, and a test holds them to it), how a process group is run and
stopped (``processes``), ports (``net``) and the starters that tie them together
(``services``). ``app.devserver`` (``make run``), the tests' fixtures (``tests/support``) and
the benchmarks (``python -m bench``) all use it; it imports nothing from ``app``, ``tasks``
or ``tests``: the app and the Celery app are named by their import strings only.
"""
