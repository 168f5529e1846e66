"""Moving files in and out of the worker: streaming downloads, streaming PUT uploads and the
claim callback to the app.

Inputs arrive as signed URLs, so their query strings are secrets: messages and logs only ever
show ``scheme://host/path`` (``gpu_worker.redaction``).

Outages are waited out: connection errors, timeouts and 408/429/5xx are retried with capped
exponential backoff for at least ``attempts`` tries and until ``deadline_s`` has passed
(``TRANSFER_DEADLINE_S``, 300 s by default: an app restart or a short outage of its storage
takes minutes, and the deadline stays inside the endpoint's execution timeout). Any other
4xx fails at once: asking again will not help. A transfer that gives up on an outage raises
``StorageUnreachable`` (or ``AppUnreachable`` for the claim), which the result marks with
``error_kind`` so the app can start one new attempt by itself.

The model cache downloads through the same pieces: ``Retries`` (the one retry loop) and the
resume protocol (``range_headers``, ``resume_offset``, ``write_body``). Their requests differ
on purpose: inputs follow redirects by hand so none can switch scheme, while hub downloads let
``requests`` follow the hub's redirect to its CDN, which drops the token on the way.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import requests

from gpu_worker.errors import AppUnreachable, InputError, StorageUnreachable, TransferError
from gpu_worker.redaction import redact_url

log = logging.getLogger("gpu_worker.transfer")

ALLOWED_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
CHUNK = 1024 * 1024
# Space left free on the work disk beyond the file itself, for the pipeline's own output.
FREE_SPACE_MARGIN = 1.2
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

ByteProgress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class TransferPolicy:
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    attempts: int = 4  # at least this many tries
    backoff_s: float = 1.0
    deadline_s: float = 0.0  # and go on retrying outages until this much time has passed
    backoff_cap_s: float = 15.0

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout_s, self.read_timeout_s)

    def sleep_before(self, attempt: int, remaining: float | None = None) -> None:
        delay = min(self.backoff_cap_s, self.backoff_s * (2 ** min(attempt - 1, 30)))
        if remaining is not None and attempt > self.attempts:
            delay = min(delay, max(0.0, remaining))
        time.sleep(delay)


class Retries:
    """Counts failed tries of one transfer against its policy's attempts and deadline; the
    one retry loop of the worker's downloads, uploads and claim (``while tries.again()``).

    A download that moves bytes calls ``progressed``: failures count in a row without
    progress, so a link that drops but keeps moving is not failing."""

    def __init__(self, policy: TransferPolicy) -> None:
        self.policy = policy
        self.started = time.monotonic()
        self.failures = 0  # in a row
        self.total = 0

    def failed(self) -> None:
        self.failures += 1
        self.total += 1

    def progressed(self) -> None:
        """The try moved some bytes: failures count from zero again."""
        self.failures = 0

    def remaining(self) -> float:
        return self.policy.deadline_s - (time.monotonic() - self.started)

    def again(self) -> bool:
        """May the transfer try once more (sleeping the backoff first)?"""
        if self.failures < self.policy.attempts or self.remaining() > 0:
            if self.failures:
                self.policy.sleep_before(self.failures, self.remaining())
            return True
        return False

    def summary(self) -> str:
        text = f"after {self.total} attempts"
        if self.policy.deadline_s > 0:
            text += f" over {time.monotonic() - self.started:.0f} s"
        return text


def check_url(field: str, url: object) -> str:
    """Return ``url`` if it is an http(s) URL with a host; ``InputError`` naming ``field``."""
    if not isinstance(url, str) or not url.strip():
        raise InputError(f"{field}: expected an http(s) URL string, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ALLOWED_SCHEMES:
        shown = parts.scheme or "no scheme"
        raise InputError(f"{field}: only http and https URLs are accepted, got {shown}")
    if not parts.hostname:
        raise InputError(f"{field}: the URL has no host: {redact_url(url)}")
    return url


def _check_free_space(directory: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed * FREE_SPACE_MARGIN:
        raise TransferError(
            f"{what}: needs {human_bytes(needed)} "
            f"(with margin {human_bytes(int(needed * FREE_SPACE_MARGIN))}) but only "
            f"{human_bytes(free)} is free on the worker's disk at {directory}; give the "
            "endpoint a larger container disk or send a smaller file"
        )


def human_bytes(n: int) -> str:
    if n >= 1024**3:
        return f"{n / 1024**3:.1f} GiB"
    if n >= 1024**2:
        return f"{n / 1024**2:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


def stream_body(resp: requests.Response, size: int = CHUNK) -> Iterator[bytes]:
    """The response body as it arrives (``read1``), so a dropped connection loses nothing
    already received; urllib3's errors come out as ``requests.ConnectionError``."""
    import urllib3.exceptions

    try:
        while True:
            chunk = resp.raw.read1(size)
            if not chunk:
                return
            yield chunk
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.ReadTimeout(str(exc)) from None
    except urllib3.exceptions.HTTPError as exc:
        raise requests.ConnectionError(f"connection reset: {exc}") from None


def range_headers(have: int) -> dict[str, str]:
    """Headers for a GET of a file of which ``have`` bytes are already on disk (no content
    encoding: the Range's offsets are the file's)."""
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    return headers


def resume_offset(resp: requests.Response, out: BinaryIO, have: int) -> int:
    """How many bytes of ``out`` the body continues: ``have`` after a 206; none, with ``out``
    emptied, when the server ignored the Range and sends the whole file again."""
    if have and resp.status_code != 206:
        out.seek(0)
        out.truncate()
        return 0
    return have


def write_body(
    resp: requests.Response,
    out: BinaryIO,
    have: int,
    on_bytes: Callable[[int], None],
    size: int = CHUNK,
) -> int:
    """Append ``resp``'s body to ``out`` as it arrives; return the file's size. ``on_bytes``
    is told the size each chunk brings the file to before it is written (it may raise to
    refuse the file)."""
    for chunk in stream_body(resp, size):
        have += len(chunk)
        on_bytes(have)
        out.write(chunk)
    return have


def _open(session: requests.Session, url: str, field: str, headers: dict, policy: TransferPolicy):
    """GET ``url`` following redirects by hand, so a redirect cannot switch scheme; the
    ``Authorization`` header (a hub token) never follows a redirect to another host."""
    for _ in range(MAX_REDIRECTS + 1):
        resp = session.get(
            url, headers=headers, stream=True, timeout=policy.timeout, allow_redirects=False
        )
        if resp.is_redirect:
            target = urljoin(url, resp.headers.get("Location", ""))
            resp.close()
            scheme = urlsplit(target).scheme
            if scheme not in ALLOWED_SCHEMES:
                raise InputError(
                    f"{field}: {redact_url(url)} redirects to a {scheme or 'schemeless'} URL; "
                    "only http and https are followed"
                )
            if urlsplit(target).hostname != urlsplit(url).hostname:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = target
            continue
        return resp
    raise InputError(f"{field}: more than {MAX_REDIRECTS} redirects from {redact_url(url)}")


def download(
    url: str,
    dest: Path,
    *,
    field: str,
    max_bytes: int,
    policy: TransferPolicy,
    progress: ByteProgress | None = None,
    session: requests.Session | None = None,
    headers: dict[str, str] | None = None,
    resume: bool = False,
) -> int:
    """Stream ``url`` to ``dest``; return its size in bytes.

    Resumes with a Range request after a dropped connection when the server supports it
    (with ``resume``, from the bytes already in ``dest`` too: a model file's ``.partial``
    left on the volume by a worker that died), retries connection errors and 5xx with
    exponential backoff, and refuses files larger than ``max_bytes`` or larger than the
    free space. ``headers`` go with every request. Errors name ``field``.
    """
    check_url(field, url)
    session = session or requests.Session()
    shown = redact_url(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    total: int | None = None
    last_error = ""
    tries = Retries(policy)

    def received(size: int) -> None:
        nonlocal got
        got = size
        if got > max_bytes:
            _check_size(field, shown, max_bytes + 1, max_bytes)
        if progress:
            progress(got, total)

    with open(dest, "ab" if resume else "wb") as out:
        got = out.tell()
        while tries.again():
            before = got
            try:
                asked = {**(headers or {}), **range_headers(got)}
                with _open(session, url, field, asked, policy) as resp:
                    if resp.status_code in RETRY_STATUSES:
                        last_error = f"{resp.status_code} {resp.reason}"
                        tries.failed()
                        continue
                    if resp.status_code >= 400:
                        raise TransferError(_http_error_message(field, shown, resp))
                    got = resume_offset(resp, out, got)
                    before = min(before, got)
                    if total is None:
                        total = _content_total(resp)
                        if total is not None:
                            _check_size(field, shown, total, max_bytes)
                            _check_free_space(dest.parent, total - got, field)
                    write_body(resp, out, got, received)
                if total is None or got >= total:
                    return got
                last_error = f"connection closed after {got} of {total} bytes"
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_error = _describe_network_error(exc, policy)
            except requests.exceptions.ChunkedEncodingError:
                last_error = f"connection reset after {got} bytes"
            log.warning("%s: download of %s interrupted (%s)", field, shown, last_error)
            if got > before:
                tries.progressed()
            else:
                tries.failed()
    raise StorageUnreachable(f"{field}: could not download {shown} {tries.summary()}: {last_error}")


def _content_total(resp: requests.Response) -> int | None:
    if resp.status_code == 206:
        crange = resp.headers.get("Content-Range", "")
        tail = crange.rpartition("/")[2]
        return int(tail) if tail.isdigit() else None
    length = resp.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _check_size(field: str, shown: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise InputError(
            f"{field}: the file at {shown} is larger than the worker's limit of "
            f"{human_bytes(max_bytes)} ({human_bytes(size)} or more); send a smaller file or "
            "raise MAX_INPUT_BYTES"
        )


def _http_error_message(field: str, shown: str, resp: requests.Response) -> str:
    hint = {
        401: "the URL needs credentials the worker does not have",
        403: "the signed URL was refused; it may have expired, so submit the job again",
        404: "nothing is there; the file was deleted or the signed URL is wrong",
        410: "the file is gone",
    }.get(resp.status_code, "the server refused the download")
    return f"{field}: {shown} answered {resp.status_code} {resp.reason}: {hint}"


def _describe_network_error(exc: Exception, policy: TransferPolicy) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection within {policy.connect_timeout_s:g} s (connect timeout)"
    if isinstance(exc, requests.ReadTimeout):
        return f"no data for {policy.read_timeout_s:g} s (read timeout)"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        if "Connection refused" in text:
            return "connection refused"
        if "reset" in text.lower() or "aborted" in text.lower():
            return "connection reset"
        return "connection failed"
    return type(exc).__name__


def upload(
    path: Path,
    url: str,
    *,
    content_type: str,
    policy: TransferPolicy,
    session: requests.Session | None = None,
) -> None:
    """PUT ``path`` to the presigned ``url``, streaming it from disk, with retries."""
    check_url("output.put_url", url)
    session = session or requests.Session()
    shown = redact_url(url)
    size = path.stat().st_size
    last_error = ""
    tries = Retries(policy)
    while tries.again():
        try:
            with open(path, "rb") as body:
                resp = session.put(
                    url,
                    data=body,
                    headers={"Content-Type": content_type, "Content-Length": str(size)},
                    timeout=policy.timeout,
                    allow_redirects=False,
                )
            with resp:
                if resp.status_code < 300:
                    return
                last_error = f"{resp.status_code} {resp.reason}"
                if resp.status_code not in RETRY_STATUSES:
                    raise TransferError(_upload_refused(shown, resp, size, content_type))
        except (requests.ConnectionError, requests.Timeout) as exc:
            last_error = _describe_network_error(exc, policy)
        tries.failed()
        log.warning("upload to %s failed (%s), attempt %d", shown, last_error, tries.total)
    raise StorageUnreachable(
        f"output.put_url: could not upload to {shown} {tries.summary()}: {last_error}"
    )


def _upload_refused(shown: str, resp: requests.Response, size: int, content_type: str) -> str:
    status = f"{resp.status_code} {resp.reason}"
    if resp.status_code == 413:
        return (
            f"output.put_url: {shown} refused the result with {status}: the result "
            f"({human_bytes(size)}) is larger than the app accepts (MAX_UPLOAD_BYTES); use "
            "smaller parameters or ask an operator to raise the limit"
        )
    if resp.status_code in (409, 410):
        return (
            f"output.put_url: {shown} refused the result with {status}: the job already "
            "ended (cancelled, finished or retried), so this result is not needed"
        )
    return (
        f"output.put_url: {shown} refused the upload with {status}; the presigned URL may "
        f"have expired or be signed for another content type (sent {content_type})"
    )


CLAIM_TIMEOUT = (5.0, 15.0)


def claim(url: str, runpod_id: str, *, policy: TransferPolicy) -> tuple[int, str]:
    """Claim the attempt at the app (``callbacks.claim``) for RunPod job ``runpod_id``.

    Returns ``(status, message)``: 200 run it, 409 a duplicate, 410 superseded. Retries an
    unreachable app until the policy's deadline, then raises ``AppUnreachable``.
    """
    check_url("callbacks.claim", url)
    shown = redact_url(url)
    session = requests.Session()
    tries = Retries(policy)
    last_error = ""
    while tries.again():
        try:
            resp = session.post(
                url, json={"runpod_id": runpod_id}, timeout=CLAIM_TIMEOUT, allow_redirects=False
            )
            with resp:
                message = _answer_message(resp)
                if resp.status_code in (200, 409, 410):
                    return resp.status_code, message
                last_error = f"{resp.status_code} {resp.reason}"
                if resp.status_code not in RETRY_STATUSES:
                    raise TransferError(
                        f"callbacks.claim: {shown} refused the claim with {last_error}: "
                        f"{message}; the job was not run. Submit it again"
                    )
        except (requests.ConnectionError, requests.Timeout) as exc:
            last_error = _describe_network_error(exc, policy)
        tries.failed()
        log.warning("claim at %s failed (%s), attempt %d", shown, last_error, tries.total)
    raise AppUnreachable(
        f"the app was unreachable at {shown} {tries.summary()} ({last_error}); the job was "
        "not run, so that it cannot run twice. The app retries it once by itself; if it "
        "fails again, check that GPU workers can reach PUBLIC_BASE_URL"
    )


def _answer_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.reason or ""
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or "")[:300]
    return ""
