"""A local server speaking the Hugging Face Hub's protocol (``HF_ENDPOINT``), for tests.

It serves repos the test builds in memory, the way huggingface_hub 2.4 and the deploy
tooling's sizing read them:

- ``GET /api/models/{repo}/revision/{rev}``: ``{"id", "sha", "siblings"}``; with
  ``?blobs=true`` each sibling carries ``size``, ``blobId`` and ``lfs`` (``sha256``, ``size``)
  (404 with ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound``);
- ``GET /api/models/{repo}/tree/{rev}``: a directory entry per folder and a file entry
  per file; every file is listed as LFS, the real ``size`` under ``lfs`` (``{"oid":
  sha256, "size", "pointerSize"}``) and the pointer's size as the entry's own ``size``, so
  a client that reads the wrong one is caught. With ``page_size`` set the listing comes in
  pages linked by ``Link: <…?cursor=N>; rel="next"``, like the hub's;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: ``ETag``, ``X-Repo-Commit``,
  ``Content-Length``, ``Accept-Ranges: bytes`` and ``Range`` requests (206).

A repo's file is its bytes, or just a size (an ``int``) for models too large to hold: those
are listed with that size and never served. Knobs for failure tests: ``reported_size`` (lie
about a file's size in the tree listing), ``drop_after`` (close the connection after N
bytes, once), ``drop_every`` (after N bytes of every response), ``wrong_sha256`` (list a
checksum the bytes do not match), ``throttle_bps`` (slow bodies), ``token`` (require
``Authorization: Bearer <token>``), ``gated`` (repo ids that answer 401 to a request
without any ``Authorization``). ``requests`` records every path asked for, ``served``
every body sent, ``auth_seen`` every ``Authorization`` header.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.http_server import HTTPStandIn, QuietHandler

POINTER_SIZE = 134


@dataclass
class Repo:
    files: dict[str, bytes | int]
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


class FakeHub(HTTPStandIn):
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.page_size: int | None = None
        self.reported_size: dict[str, int] = {}
        self.drop_after: dict[str, int] = {}
        self.drop_every: dict[str, int] = {}
        self.wrong_sha256: set[str] = set()
        self.throttle_bps: int = 0
        self.token: str | None = None
        self.gated: set[str] = set()
        self.requests: list[str] = []
        self.served: list[Served] = []
        self.auth_seen: list[str | None] = []
        self._lock = threading.Lock()

    def add_repo(self, repo_id: str, files: dict[str, bytes | int], sha: str | None = None) -> Repo:
        repo = Repo(files=files)
        if sha:
            repo.sha = sha
        self.repos[repo_id] = repo
        return repo

    @property
    def url(self) -> str:
        return self.origin

    def bytes_served(self, path: str) -> int:
        return sum(s.sent for s in self.served if s.path == path)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        return Handler


API = re.compile(r"^/api/models/([^/]+/[^/]+)/(revision|tree)/([^/?]+)")
RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def _tree(hub: FakeHub, repo: Repo) -> list[dict]:
    folders = {p.rsplit("/", 1)[0] for p in repo.files if "/" in p}
    folders |= {f.rsplit("/", i)[0] for f in folders for i in range(1, f.count("/") + 1)}
    entries: list[dict] = [{"type": "directory", "path": f, "oid": "0" * 40} for f in folders]
    for name, data in repo.files.items():
        content = data if isinstance(data, bytes) else str(data).encode()
        size = hub.reported_size.get(name, len(data) if isinstance(data, bytes) else data)
        entries.append(
            {
                "type": "file",
                "path": name,
                "size": POINTER_SIZE,
                "oid": hashlib.sha1(content).hexdigest(),  # noqa: S324 - git blob ids are sha1
                "lfs": {
                    "oid": hashlib.sha256(
                        content + (b"!" if name in hub.wrong_sha256 else b"")
                    ).hexdigest(),
                    "size": size,
                    "pointerSize": POINTER_SIZE,
                },
            }
        )
    return sorted(entries, key=lambda e: e["path"])


class _Handler(QuietHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def _authorised(self, repo_id: str | None) -> bool:
        auth = self.headers.get("Authorization")
        self.hub.auth_seen.append(auth)
        wrong_token = self.hub.token and auth != f"Bearer {self.hub.token}"
        if wrong_token or (repo_id in self.hub.gated and not auth):
            self.send_json(401, {"error": "Invalid credentials"}, {"X-Error-Code": "RepoNotFound"})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        self.hub.requests.append(self.path)
        url = urlsplit(self.path)
        match = API.match(url.path) or RESOLVE.match(url.path)
        if not self._authorised(match.group(1) if match else None):
            return
        if match is None:
            return self.send_json(404, {"error": "not found"})
        if match.re is API:
            return self._api(*match.groups(), query=url.query)
        repo_id, rev, name = match.groups()
        return self._resolve(repo_id, rev, unquote(name))

    do_HEAD = do_GET  # noqa: N815

    def _api(self, repo_id: str, kind: str, rev: str, query: str) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self.send_json(
                404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
            )
        sha = repo.resolve(rev)
        if sha is None:
            return self.send_json(
                404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}
            )
        entries = _tree(self.hub, repo)
        if kind == "revision":
            siblings = [{"rfilename": p} for p in sorted(repo.files)]
            if parse_qs(query).get("blobs") in (["true"], ["True"]):  # with each file's size
                siblings = [
                    {
                        "rfilename": e["path"],
                        "blobId": e["oid"],
                        "size": e["size"],
                        "lfs": {
                            "sha256": e["lfs"]["oid"],
                            "size": e["lfs"]["size"],
                            "pointerSize": e["lfs"]["pointerSize"],
                        },
                    }
                    for e in entries
                    if e["type"] == "file"
                ]
            return self.send_json(
                200,
                {
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": sha,
                    "private": False,
                    "siblings": siblings,
                },
            )
        size = self.hub.page_size
        if size is None:
            return self.send_json(200, entries)
        start = int(parse_qs(query).get("cursor", ["0"])[0])
        headers = {}
        if start + size < len(entries):
            path = f"/api/models/{repo_id}/tree/{rev}"
            nxt = f"{self.hub.origin}{path}?recursive=true&cursor={start + size}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        self.send_json(200, entries[start : start + size], headers)

    def _resolve(self, repo_id: str, rev: str, name: str) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or repo.resolve(rev) is None:
            return self.send_json(404, {"error": "not found"}, {"X-Error-Code": "RepoNotFound"})
        data = repo.files.get(name)
        if not isinstance(data, bytes):
            return self.send_json(404, {"error": "no entry"}, {"X-Error-Code": "EntryNotFound"})
        start = 0
        status = 200
        rng = self.headers.get("Range")
        if rng:
            m = re.match(r"bytes=(\d+)-$", rng)
            start = int(m.group(1)) if m else 0
            if start >= len(data):
                return self.send_body(416, b"", {"Content-Range": f"bytes */{len(data)}"})
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
