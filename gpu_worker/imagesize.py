"""An image's width and height read from its first bytes, before any decoder sees it.

A decoder allocates the whole frame as soon as it has read the header, so a 31 KB PNG that
says 16000×16000 costs a gigabyte once decoded. These readers look only at the header (PNG's
IHDR, JPEG's SOF segment, WebP's VP8/VP8L/VP8X chunk), so a pipeline can refuse such a file,
or such a packet of an MJPEG or PNG video stream, before decoding it. Pure Python, no imports
beyond the standard library.
"""

from __future__ import annotations

import struct
from pathlib import Path

# How much of a file the readers look at: a JPEG's SOF comes after its APPn segments (EXIF,
# ICC profiles), which are at most 64 KiB each; a few of them fit.
HEADER_BYTES = 1 << 20

_PNG = b"\x89PNG\r\n\x1a\n"
# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): the segments that carry the frame size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def size_of(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or WebP header; None when ``data`` is none of them
    or its header is cut short."""
    if data.startswith(_PNG):
        return _png(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    return None


def file_size_of(path: Path) -> tuple[int, int] | None:
    """``size_of`` the first ``HEADER_BYTES`` of the file."""
    with open(path, "rb") as fh:
        return size_of(fh.read(HEADER_BYTES))


def _png(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _JPEG_SOF:
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        if marker in (0xD9, 0xDA) or length < 2:  # end of image or scan data: no SOF found
            return None
        at += 2 + length
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None
