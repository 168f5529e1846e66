"""A local server speaking the Hugging Face Hub's protocol, for model-cache tests.

It serves repos the test builds in memory, the way huggingface_hub 2.4 reads them:

- ``GET /api/models/{repo}/revision/{rev}``: ``{"id", "sha", "siblings"}``
  (404 with ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound``);
- ``GET /api/models/{repo}/tree/{rev}``: the file list with real ``size`` and, for LFS
  files, ``lfs: {"oid": sha256, "size", "pointerSize"}``;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: ``ETag``, ``X-Repo-Commit``,
  ``Content-Length``, ``Accept-Ranges: bytes`` and ``Range`` requests (206).

Knobs for failure tests: ``reported_size`` (lie about a file's size in the tree listing),
``drop_after`` (close the connection after N bytes, once), ``drop_every`` (after N bytes of
every response), ``wrong_sha256`` (list a checksum the bytes do not match),
``throttle_bps`` (slow bodies),
``token`` (require ``Authorization: Bearer <token>``). ``requests`` records every body sent.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str = "0123456789abcdef0123456789abcdef01234567"
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> str | None:
        if rev == self.sha:
            return self.sha
        return self.branches.get(rev, self.sha if rev == "main" else None)


@dataclass
class Served:
    path: str
    start: int
    sent: int


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.reported_size: dict[str, int] = {}
        self.drop_after: dict[str, int] = {}
        self.drop_every: dict[str, int] = {}
        self.wrong_sha256: set[str] = set()
        self.throttle_bps: int = 0
        self.token: str | None = None
        self.served: list[Served] = []
        self.api_calls: list[str] = []
        self.auth_seen: list[str | None] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def add_repo(self, repo_id: str, files: dict[str, bytes], sha: str | None = None) -> Repo:
        repo = Repo(files=files)
        if sha:
            repo.sha = sha
        self.repos[repo_id] = repo
        return repo

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def bytes_served(self, path: str) -> int:
        return sum(s.sent for s in self.served if s.path == path)

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


API = re.compile(r"^/api/models/([^/]+/[^/]+)/(revision|tree)/([^/?]+)")
RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization")
        self.hub.auth_seen.append(auth)
        if self.hub.token and auth != f"Bearer {self.hub.token}":
            self._json(401, {"error": "Invalid credentials"}, {"X-Error-Code": "RepoNotFound"})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if not self._authorised():
            return
        match = API.match(path)
        if match:
            self.hub.api_calls.append(path)
            return self._api(*match.groups())
        match = RESOLVE.match(path)
        if match:
            repo_id, rev, name = match.groups()
            return self._resolve(repo_id, rev, unquote(name))
        self._json(404, {"error": "not found"})

    do_HEAD = do_GET  # noqa: N815

    def _api(self, repo_id: str, kind: str, rev: str) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._json(
                404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
            )
        sha = repo.resolve(rev)
        if sha is None:
            return self._json(
                404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}
            )
        if kind == "revision":
            return self._json(
                200,
                {
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": sha,
                    "private": False,
                    "siblings": [{"rfilename": p} for p in sorted(repo.files)],
                },
            )
        entries = []
        for name, data in sorted(repo.files.items()):
            size = self.hub.reported_size.get(name, len(data))
            entries.append(
                {
                    "type": "file",
                    "path": name,
                    "size": size,
                    "oid": hashlib.sha1(data).hexdigest(),  # noqa: S324 - git blob ids are sha1
                    "lfs": {
                        "oid": hashlib.sha256(
                            data + (b"!" if name in self.hub.wrong_sha256 else b"")
                        ).hexdigest(),
                        "size": size,
                        "pointerSize": 134,
                    },
                }
            )
        self._json(200, entries)

    def _resolve(self, repo_id: str, rev: str, name: str) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or repo.resolve(rev) is None:
            return self._json(404, {"error": "not found"}, {"X-Error-Code": "RepoNotFound"})
        data = repo.files.get(name)
        if data is None:
            return self._json(404, {"error": "no entry"}, {"X-Error-Code": "EntryNotFound"})
        start = 0
        status = 200
        rng = self.headers.get("Range")
        if rng:
            m = re.match(r"bytes=(\d+)-$", rng)
            start = int(m.group(1)) if m else 0
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", repo.resolve(rev) or "")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        record = Served(name, start, 0)
        with self.hub._lock:
            self.hub.served.append(record)
            limit = self.hub.drop_after.pop(name, None) or self.hub.drop_every.get(name)
        step = 1024 if self.hub.throttle_bps else 16 * 1024
        for offset in range(0, len(body), step):
            piece = body[offset : offset + step]
            if limit is not None and record.sent + len(piece) > limit:
                piece = piece[: max(0, limit - record.sent)]
                self.wfile.write(piece)
                record.sent += len(piece)
                self.close_connection = True
                return
            if self.hub.throttle_bps:
                time.sleep(len(piece) / self.hub.throttle_bps)
            try:
                self.wfile.write(piece)
            except (BrokenPipeError, ConnectionResetError):
                return
            record.sent += len(piece)
