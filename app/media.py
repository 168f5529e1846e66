"""What an uploaded file really is: a video, an image, or neither, and how large its frames are.

No frame over the limit is decoded to find out (docs/design.md, invariant 13: every check
is made before the decode it guards). A PNG, JPEG or WebP image is measured from its
header bytes alone (IHDR, SOF, VP8/VP8L/VP8X), before any decoder sees it: a 249 KB PNG
that says 8000×8000 would otherwise cost 250 MB of the web process the moment it is
opened. Then the file is opened with PyAV, whose probing decoders are told to skip frames
(those that obey read only headers) and get FFmpeg's ``max_pixels`` (those that decode
anyway refuse a large frame before allocating it). A file renamed ``.mp4`` or an image
sent to a video pipeline is refused at upload time, in words; the name and declared type
are not trusted for this.

The header reader is a second, small copy of ``gpu_worker/imagesize.py``: the web image
ships ``app/`` without ``gpu_worker/`` (tests/test_layout.py), and the fixed top-level
layout has no package both may import. Both check the same formats the same way.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

log = logging.getLogger(__name__)

# PyAV names single-image containers *_pipe (png_pipe, jpeg_pipe, bmp_pipe...) or image2.
IMAGE_FORMATS = {"image2"}
# The image codecs pipelines read and write: PNG, JPEG and WebP.
IMAGE_CODECS = {"png", "mjpeg", "webp"}
# The largest frame the GPU worker decodes (its FrameLimit defaults: 4K UHD and DCI 4K); a
# larger upload would only be refused there, after costing the web process its decode.
MAX_SIDE = 4096
MAX_PIXELS = 4096 * 2304
# Decoders that, told to skip every frame, read its size from the headers without allocating
# it (PNG's, for one, decodes anyway; it gets max_pixels instead).
SKIP_AWARE = {"mjpeg", "h264", "hevc"}
# How much of a file the header reader looks at: a JPEG's SOF comes after its APPn segments
# (EXIF, ICC profiles), at most 64 KiB each; a few of them fit.
HEADER_BYTES = 1 << 20

_PNG = b"\x89PNG\r\n\x1a\n"
# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): the segments that carry the frame size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # video | image
    width: int
    height: int
    container: str
    codec: str


class TooLarge(ValueError):
    """The file's frames are over the limit; the message names it (an HTTP 413)."""


def check_size(width: int, height: int) -> None:
    """``TooLarge`` when a ``width``×``height`` frame is over ``MAX_SIDE`` or ``MAX_PIXELS``."""
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise TooLarge(
            f"the file's frames are {width}×{height}: over the limit of {MAX_SIDE} pixels a "
            f"side and {MAX_PIXELS / 1e6:.1f} megapixels; send a smaller file"
        )


def probe(path: str) -> MediaInfo | None:
    """The file's kind and picture size from its headers; ``None`` when it is neither a
    readable video nor a readable image; ``TooLarge`` when its frames are over the limit."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
    image = image_header(head)
    if image is not None:
        check_size(image[1], image[2])
    # Within the limit (or not an image we read): what the decoder makes of it decides.
    return _probe_container(path)


def _probe_container(path: str) -> MediaInfo | None:
    import av

    options = {"skip_frame": "all", "max_pixels": str(MAX_PIXELS + 64 * MAX_SIDE)}
    try:
        with av.open(path, options=options) as container:
            streams = container.streams.video
            if not streams:
                return None
            context = streams[0].codec_context
            width, height = context.width, context.height
            if not width or not height:
                width, height = _declared_size(path, context.name)
            check_size(width, height)
            fmt = container.format.name
            is_image = fmt in IMAGE_FORMATS or fmt.endswith("_pipe")
            return MediaInfo(
                kind="image" if is_image else "video",
                width=width,
                height=height,
                container=fmt,
                codec=context.name,
            )
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        if isinstance(exc, TooLarge):
            raise
        # The details (FFmpeg's error code, the staging path) are for the log, not the page.
        log.info("upload is not readable media: %s", exc)
        return None


def _declared_size(path: str, codec: str) -> tuple[int, int]:
    """The frame size a stream declares when its probe's ``max_pixels`` refused the frame
    (PyAV then reads 0×0): read again without it, only by decoders that skip frames by
    reading headers alone. ``TooLarge`` when it still cannot be read within the limit."""
    import av

    if codec in SKIP_AWARE:
        with av.open(path, options={"skip_frame": "all"}) as container:
            context = container.streams.video[0].codec_context
            if context.width and context.height:
                return context.width, context.height
    raise TooLarge(
        f"the file's frame size cannot be read within the limit of {MAX_SIDE} pixels a side "
        f"and {MAX_PIXELS / 1e6:.1f} megapixels; send a smaller file"
    )


def image_header(data: bytes) -> tuple[str, int, int] | None:
    """(PyAV codec name, width, height) from a PNG, JPEG or WebP header; None when ``data``
    is none of them or its header is cut short."""
    if data.startswith(_PNG):
        size = _png(data)
        codec = "png"
    elif data.startswith(b"\xff\xd8"):
        size = _jpeg(data)
        codec = "mjpeg"
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp(data)
        codec = "webp"
    else:
        return None
    return (codec, *size) if size and all(size) else None


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
