"""The GPU worker's one redactor: what it logs or reports never carries a secret.

Job inputs arrive as signed URLs whose query strings are secrets, so messages, logs and
Sentry breadcrumbs show ``scheme://host/path`` only; settings whose names look secret are
shown as set or unset.

The worker's image ships ``gpu_worker`` alone, so this is its own copy of the list of
secret-looking names (``deploy.redaction`` holds the web/Celery/operator image's); a test
asserts the two agree.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL|DSN)", re.I)


def redact_url(url: str) -> str:
    """``url`` without its query string and credentials: safe for logs and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def drop_query_strings(crumb: dict, hint: dict) -> dict:
    """Sentry ``before_breadcrumb``: HTTP breadcrumbs keep scheme, host and path only (signed
    URLs carry signatures)."""
    data = crumb.get("data") or {}
    data.pop("http.query", None)
    data.pop("http.fragment", None)
    if isinstance(data.get("url"), str):
        data["url"] = data["url"].split("?", 1)[0]
    return crumb


def is_secret_name(name: str) -> bool:
    """Does a setting or variable called ``name`` hold a secret?"""
    return bool(SECRET_NAME.search(name))
