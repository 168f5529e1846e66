"""The one redactor of the web, Celery and operator processes (they ship in one image).

What counts as a secret is written here once: environment variables whose names look secret
(``SECRET_NAME``), fields a Sentry event must never carry (``SECRET_FIELDS``) and secrets that
travel inside text (bearer tokens, URL signatures, credentials in a URL, webhook tokens in a
path). ``app.observability`` uses it for every log line and Sentry event, ``deploy.ops`` for
everything it prints, the local endpoint for the webhook URLs it logs.

The GPU worker ships without this package, so ``gpu_worker.redaction`` keeps its own copy of
``SECRET_NAME``; a test asserts the two agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

FILTERED = "[Filtered]"

# Environment variables whose values are secrets, by name (the contract's settings and any
# other *_KEY/*_TOKEN/*PASSWORD/*SECRET* a deployment adds).
SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL|DSN)", re.I)
# Short values ("1", "true") would shred every message they happen to occur in.
MIN_SECRET_LEN = 6

# Field names scrubbed wherever they occur in a Sentry event (added to Sentry's defaults).
SECRET_FIELDS = (
    "secret_key",
    "runpod_api_key",
    "aws_secret_access_key",
    "aws_session_token",
    "admin_password",
    "api_tokens",
    "sentry_dsn",
    "webhook_token",
    "put_url",
    "signature",
    "sig",
    "x-amz-signature",
    "x-amz-credential",
)

# Secrets that travel in text rather than in named fields: bearer tokens, URL signatures
# (ours and S3's presigned ones), credentials inside a URL, and webhook tokens in paths.
# Each pattern keeps group 1 and replaces the rest of the match with the mark and the suffix.
_TEXT_PATTERNS = (
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), ""),
    (
        re.compile(
            r"(?i)([?&](?:sig|signature|token|key|api_key|x-amz-signature|x-amz-credential"
            r"|x-amz-security-token)=)[^&#\s'\"]+"
        ),
        "",
    ),
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), "@"),
    (re.compile(r"(?i)(/webhooks?/[^/\s?'\"]+/)[^/\s?'\"]+"), ""),
)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables (comma lists split), longest first."""
    environ = dict(os.environ if environ is None else environ)
    found: set[str] = set()
    for name, value in environ.items():
        if not value or not SECRET_NAME.search(name):
            continue
        for part in [value, *value.split(",")]:
            part = part.strip()
            if len(part) >= MIN_SECRET_LEN:
                found.add(part)
    dsn_key = re.match(r"[a-z]+://([^@:/]+)[^@/]*@", environ.get("SENTRY_DSN", ""))
    if dsn_key and len(dsn_key.group(1)) >= MIN_SECRET_LEN:
        found.add(dsn_key.group(1))
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] | None = None, mark: str = FILTERED) -> str:
    """``text`` with every secret value (by default those of the environment, see
    ``secret_values``) and token-bearing URL part replaced by ``mark``."""
    for value in secret_values() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, mark)
    for pattern, suffix in _TEXT_PATTERNS:
        text = pattern.sub(lambda m, s=suffix: m.group(1) + mark + s, text)
    return text


def url_origin(url: str) -> str:
    """A URL fit for logs when its path may hold a token too (the app's
    ``/webhooks/<id>/<token>``): scheme and host only."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}/…"
