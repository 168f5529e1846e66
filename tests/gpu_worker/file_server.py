"""A local HTTP file server standing in for the app's signed URLs and presigned PUT URLs.

``GET /files/<name>`` serves with Range support; ``PUT /upload/<name>`` stores the body.
Behaviours for failure tests: unknown names get 404, ``stall_s`` makes GETs wait before the
body (read timeout), ``redirects`` maps a name to a Location, ``drop_once`` closes the
connection after N bytes on the first GET of a name (``drop_every``: on every GET),
``put_failures`` answers N 503s first, ``chunked`` names are sent without a Content-Length.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler

from tests.support.http_server import HTTPStandIn, QuietHandler


class FileServer(HTTPStandIn):
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.uploads: dict[str, bytes] = {}
        self.upload_types: dict[str, str | None] = {}
        self.redirects: dict[str, str] = {}
        self.drop_once: dict[str, int] = {}
        self.drop_every: dict[str, int] = {}
        self.put_failures = 0
        self.stall_s = 0.0
        self.chunked: set[str] = set()
        self.gets: list[tuple[str, str | None]] = []
        self.authorization: dict[str, str | None] = {}  # the last GET of each name brought
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"{self.origin}/{path.lstrip('/')}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            pass

        Handler.fs = server
        return Handler


class _Handler(QuietHandler):
    fs: FileServer
    protocol_version = "HTTP/1.1"

    def _plain(self, status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
        self.send_body(status, text.encode(), headers)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        name = path.rsplit("/", 1)[-1]
        self.fs.gets.append((name, self.headers.get("Range")))
        self.fs.authorization[name] = self.headers.get("Authorization")
        if name in self.fs.redirects:
            return self._plain(302, "", {"Location": self.fs.redirects[name]})
        if not path.startswith("/files/") or name not in self.fs.files:
            return self._plain(404, "no such file")
        if self.fs.stall_s:
            time.sleep(self.fs.stall_s)
        data = self.fs.files[name]
        start = 0
        status = 200
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if m:
            start, status = int(m.group(1)), 206
        body = data[start:]
        self.send_response(status)
        if name in self.fs.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for offset in range(0, len(body), 4096):
                piece = body[offset : offset + 4096]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        with self.fs._lock:
            limit = self.fs.drop_once.pop(name, None) or self.fs.drop_every.get(name)
        if limit is not None:
            self.wfile.write(body[:limit])
            self.close_connection = True
            return
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_PUT(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.fs.put_failures > 0:
            self.fs.put_failures -= 1
            return self._plain(503, "try again")
        if not path.startswith("/upload/"):
            return self._plain(403, "not signed for this path")
        name = path.rsplit("/", 1)[-1]
        self.fs.uploads[name] = body
        self.fs.upload_types[name] = self.headers.get("Content-Type")
        self._plain(200)
