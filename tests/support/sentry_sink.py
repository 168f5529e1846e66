"""A local HTTP sink that speaks enough of Sentry's ingest API to receive envelopes."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.http_server import HTTPStandIn, QuietHandler

PUBLIC_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


@dataclass
class Envelope:
    path: str
    raw: bytes  # decompressed, as sent
    headers: dict[str, Any]
    items: list[tuple[dict[str, Any], Any]]


class SentrySink(HTTPStandIn):
    """While entered, records every envelope posted to ``dsn``."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.lock = threading.Lock()

    @property
    def dsn(self) -> str:
        return self.origin.replace("http://", f"http://{PUBLIC_KEY}@") + "/42"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                raw = _decompress(body, self.headers.get("Content-Encoding", ""))
                header, items = parse_envelope(raw)
                with sink.lock:
                    sink.envelopes.append(Envelope(self.path, raw, header, items))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

        return Handler

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [p for e in self.envelopes for h, p in e.items if h.get("type") == "event"]

    def check_ins(self) -> list[dict[str, Any]]:
        with self.lock:
            return [p for e in self.envelopes for h, p in e.items if h.get("type") == "check_in"]

    def raw(self) -> bytes:
        with self.lock:
            return b"\n".join(e.raw for e in self.envelopes)

    def wait_for(self, predicate, what: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``predicate(events)`` returns a non-empty list of matching events."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate(self.events())
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no Sentry event {what} after {timeout}s; got {self.events()}")

    def wait_for_check_ins(self, slug_part: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Cron check-ins whose monitor slug contains ``slug_part``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [c for c in self.check_ins() if slug_part in (c.get("monitor_slug") or "")]
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no check-in for {slug_part!r} after {timeout}s: {self.check_ins()}")


def parse_envelope(raw: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], Any]]]:
    lines = raw.split(b"\n")
    header = json.loads(lines[0])
    items = []
    i = 1
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        item_header = json.loads(lines[i])
        length = item_header.get("length")
        if length is not None:
            # Length-prefixed payloads may hold newlines: re-slice from the raw bytes.
            rest = b"\n".join(lines[i + 1 :])
            payload_bytes = rest[:length]
            remainder = rest[length:].lstrip(b"\n")
            lines = [b""] * (i + 1) + remainder.split(b"\n")
        else:
            payload_bytes = lines[i + 1] if i + 1 < len(lines) else b""
            lines[i + 1 : i + 2] = [b""]
        try:
            payload = json.loads(payload_bytes)
        except ValueError:
            payload = payload_bytes
        items.append((item_header, payload))
        i += 1
    return header, items


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli

        return brotli.decompress(body)
    return body
