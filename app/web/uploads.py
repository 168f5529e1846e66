"""Uploads that stream straight into storage's staging folder.

Werkzeug's form parser asks ``_get_file_stream`` where to write each file part; this request
class answers with a file in storage's staging folder, so a 2 GiB upload is written to disk
chunk by chunk and never held in memory. ``max_content_length`` (``MAX_UPLOAD_BYTES``) makes
Werkzeug refuse an oversized request with 413 before reading the body, and limits a body
without ``Content-Length`` while it streams. Staged files a request leaves behind (bad
parameters, a 413 mid-stream) are deleted at teardown.
"""

from __future__ import annotations

import os
from typing import IO, Any

from flask import Request

from app.services import services


class UploadRequest(Request):
    staged: list[str]

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        staged = services().storage.staging_file()
        self.__dict__.setdefault("staged", []).append(staged.name)
        return staged


def discard_staged(request: Any) -> None:
    """Delete staged files the request did not hand to storage."""
    for path in request.__dict__.get("staged", []):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
