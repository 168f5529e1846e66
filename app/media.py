"""What an uploaded file really is: a video, an image, or neither, read with PyAV.

Only the container header and stream descriptions are read (no frame is decoded), so a file
renamed ``.mp4`` or an image sent to a video pipeline is refused at upload time, in words,
before it costs any GPU time. The name and declared type are not trusted for this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# PyAV's names for single-image containers and the codecs a still image comes in.
IMAGE_FORMATS = {"png_pipe", "jpeg_pipe", "webp_pipe", "image2"}
IMAGE_CODECS = {"png", "mjpeg", "webp"}


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # video | image
    width: int
    height: int
    container: str
    codec: str


def probe(path: str) -> MediaInfo | None:
    """The file's kind and picture size from its header; ``None`` when it is neither a
    readable video nor a readable image."""
    import av

    try:
        with av.open(path) as container:
            streams = container.streams.video
            if not streams:
                return None
            context = streams[0].codec_context
            if not context.width or not context.height:
                return None
            fmt = container.format.name
            is_image = fmt in IMAGE_FORMATS and context.name in IMAGE_CODECS
            return MediaInfo(
                kind="image" if is_image else "video",
                width=context.width,
                height=context.height,
                container=fmt,
                codec=context.name,
            )
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        # The details (FFmpeg's error code, the staging path) are for the log, not the page.
        log.info("upload is not readable media: %s", exc)
        return None
