"""A stand-in for the Hugging Face hub's tree API (``HF_ENDPOINT``), with file sizes.

``GET /api/models/{org}/{name}/tree/{revision}?recursive=true`` answers like the hub: a JSON
list of ``{"type", "oid", "path", "size"}`` entries, LFS files with ``lfs.size``, paginated
with a ``Link: <…>; rel="next"`` header. Unknown repos answer 404, ``gated/*`` repos 401
without a token.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PAGE = 2


class HubStandIn:
    def __init__(self, repos: dict[str, dict[str, int]]) -> None:
        self.repos = repos  # repo -> {path: size in bytes}
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                hub.requests.append(self.path)
                parts = url.path.split("/")
                # /api/models/{org}/{name}/tree/{rev}
                if len(parts) != 7 or parts[1:3] != ["api", "models"] or parts[5] != "tree":
                    return self._send(404, {"error": "not found"})
                repo = f"{parts[3]}/{parts[4]}"
                if repo.startswith("gated/") and "Authorization" not in self.headers:
                    return self._send(401, {"error": "gated repo"})
                if repo not in hub.repos:
                    return self._send(404, {"error": "Repository not found"})
                files = sorted(hub.repos[repo].items())
                start = int(parse_qs(url.query).get("cursor", ["0"])[0])
                page = files[start : start + PAGE]
                entries = [{"type": "directory", "oid": "d", "path": "sub", "size": 0}] * (
                    start == 0
                )
                for path, size in page:
                    entry = {"type": "file", "oid": "x", "path": path, "size": size}
                    if size > 10_000_000:
                        entry["size"] = 134  # pointer size; the real size is under lfs
                        entry["lfs"] = {"oid": "y", "size": size, "pointerSize": 134}
                    entries.append(entry)
                headers = {}
                if start + PAGE < len(files):
                    nxt = f"{hub.url}{url.path}?recursive=true&cursor={start + PAGE}"
                    headers["Link"] = f'<{nxt}>; rel="next"'
                self._send(200, entries, headers)

            def _send(self, status: int, body: Any, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler
