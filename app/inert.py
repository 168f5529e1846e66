"""Stored files are served inert (DESIGN invariant 8): a file someone uploaded, or a result a
pipeline echoed back, must never run as a page on the app's origin.

Only raster images, video and audio that the job page shows inline are sent ``inline``;
everything else (SVG, HTML, XML, PDF, text, unknown) is an attachment with a neutral type.
Every file response also carries ``nosniff`` and a sandboxing CSP, so even a mislabelled
file cannot execute script or be framed.
"""

from __future__ import annotations

import mimetypes
from urllib.parse import quote

INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        "video/mp4",
        "video/webm",
        "audio/mpeg",
        "audio/mp4",
        "audio/ogg",
        "audio/wav",
        "audio/webm",
    }
)
DOWNLOAD_TYPE = "application/octet-stream"
FILE_CSP = "default-src 'none'; media-src 'self'; img-src 'self'; sandbox"


def content_type_for(name: str) -> str:
    """The type a stored file is served as, from its name (the key's extension)."""
    guessed, _ = mimetypes.guess_type(name)
    return (guessed or DOWNLOAD_TYPE).lower()


def disposition(name: str, filename: str | None = None) -> tuple[str, str]:
    """``(Content-Type, Content-Disposition)`` for serving the file called ``name``, saved
    as ``filename`` (default: the key's last part)."""
    content_type = content_type_for(name)
    filename = filename or name.rsplit("/", 1)[-1] or "file"
    quoted = quote(filename, safe="")
    if content_type in INLINE_TYPES:
        return content_type, f"inline; filename*=UTF-8''{quoted}"
    return DOWNLOAD_TYPE, f"attachment; filename*=UTF-8''{quoted}"


def file_headers(name: str, filename: str | None = None) -> dict[str, str]:
    """Every header a stored file's response carries."""
    content_type, how = disposition(name, filename)
    return {
        "Content-Type": content_type,
        "Content-Disposition": how,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": FILE_CSP,
    }
