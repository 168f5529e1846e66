"""gunicorn's settings for the web app, in one place: the Procfile, Dockerfile.web and the
dev stack (``deploy.stack.commands.gunicorn_argv``) all start ``gunicorn --config
gunicorn.conf.py 'app:create_app()'`` and add only where to listen, how many workers and how
long a stop may take (docs/security.md, "Slow clients").

Why gevent: with threads, a client that announces a body and sends it three bytes at a time
holds a thread until it is done; ten such clients made every GET wait 30 s (issue 16). Under
gevent each connection is a greenlet, so a slow upload costs a socket and a little memory,
never a request slot: the page polls and the honest uploads go on beside thousands of them.
``worker_connections`` bounds them per worker, and ``BODY_IDLE_TIMEOUT_S`` drops a client
that sends nothing for that long, in the headers or the body.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.workers.ggevent import GeventWorker

# A client silent for this long mid-request is dropped (each receive waits at most this).
BODY_IDLE_TIMEOUT_S = float(os.environ.get("WEB_BODY_IDLE_TIMEOUT_S", "30"))


class _IdleLimitedSocket:
    """A client socket whose receive, once it has waited ``BODY_IDLE_TIMEOUT_S``, reads as the
    client hanging up: gunicorn then closes the connection quietly and a body cut short is
    the app's 400, instead of a "Socket error" traceback in the log for each such client."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def recv(self, *args: Any) -> bytes:
        try:
            return self._sock.recv(*args)
        except TimeoutError:
            return b""

    def recv_into(self, *args: Any) -> int:
        try:
            return self._sock.recv_into(*args)
        except TimeoutError:
            return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class SlowClientSafeWorker(GeventWorker):
    """gunicorn's gevent worker with an idle timeout on every client socket (its own
    handler makes each socket blocking, with no timeout at all)."""

    def handle(self, listener, client, addr):  # noqa: ANN001, ANN201 - gunicorn's signature
        client.settimeout(BODY_IDLE_TIMEOUT_S)
        # Past GeventWorker.handle, which would clear the timeout again.
        super(GeventWorker, self).handle(listener, _IdleLimitedSocket(client), addr)


worker_class = SlowClientSafeWorker
worker_connections = 1000  # per worker: the slow clients one worker holds before refusing
# The longest request is a multi-GiB upload streamed to storage; gevent workers heartbeat
# from their hub, so this only ends a worker whose hub is stuck.
timeout = 300
graceful_timeout = 30
keepalive = 5
# The default control socket is one path per user: parallel servers would clash.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
