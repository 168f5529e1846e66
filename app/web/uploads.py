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
from werkzeug.sansio.multipart import Data, Field, File, MultipartDecoder, NeedData

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


FORM_PREFIX_BYTES = 256 * 1024  # the form's own fields, before the file, are far smaller
DRAIN_BYTES = 64 * 1024 * 1024  # read this much of a refused body so the browser sees the page


def fields_before_file(request: Request) -> dict[str, str]:
    """The text fields a refused (too large) multipart upload sent before its file: the
    form puts the file last so that a 413 page can keep the pipeline and typed values
    without storing a byte of the file. The rest of the body, up to ``DRAIN_BYTES``, is read
    and dropped: a browser shows a response only once its request was taken."""
    boundary = request.mimetype_params.get("boundary")
    stream = request.environ.get("wsgi.input")
    if request.mimetype != "multipart/form-data" or not boundary or stream is None:
        return {}
    decoder = MultipartDecoder(boundary.encode(), max_form_memory_size=FORM_PREFIX_BYTES)
    fields: dict[str, str] = {}
    name, value, read, collecting = None, b"", 0, True
    left = request.content_length or DRAIN_BYTES
    while left > 0 and read < DRAIN_BYTES:
        chunk = stream.read(min(64 * 1024, left))
        if not chunk:
            break
        read += len(chunk)
        left -= len(chunk)
        if not collecting:
            continue  # draining
        decoder.receive_data(chunk)
        event = decoder.next_event()
        while not isinstance(event, NeedData) and collecting:
            if isinstance(event, File) or read > FORM_PREFIX_BYTES:
                collecting = False  # the file: everything the form typed came before it
            elif isinstance(event, Field):
                name, value = event.name, b""
            elif isinstance(event, Data) and name is not None:
                value += event.data
                if not event.more_data:
                    fields[name] = value.decode("utf-8", "replace")
                    name = None
            event = decoder.next_event()
    return fields
