"""The threaded-server part of the tests' HTTP stand-ins for outside services.

A stand-in subclasses ``HTTPStandIn`` and returns its request handler class from
``handler()``; entering it serves that handler on a free 127.0.0.1 port in a daemon
thread, leaving stops the server and closes its socket.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class HTTPStandIn:
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """The request handler class, usually bound to this stand-in."""
        raise NotImplementedError

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>`` while the stand-in is entered."""
        assert self._server is not None, "enter the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that keeps test output clean and sends a whole response in one call."""

    def log_message(self, *args: object) -> None:
        pass

    def send_body(
        self, status: int, data: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        """Status, ``Content-Length``, ``headers``, then ``data`` (no body for HEAD)."""
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.send_body(
            status,
            json.dumps(body).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )
