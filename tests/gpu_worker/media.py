"""Tiny test media: clips made with PyAV (a moving gradient with a sine-tone audio track)
and a PNG written byte by byte."""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np


def make_clip(
    path: Path,
    width: int = 64,
    height: int = 48,
    frames: int = 12,
    fps: int = 12,
    audio: bool = True,
    codec: str = "libx264",
) -> Path:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=48000)
            sound.layout = "mono"
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(frames):
            rgb = np.zeros((height, width, 3), np.uint8)
            rgb[..., 0] = (xx * 255 // max(width - 1, 1) + i * 8) % 256
            rgb[..., 1] = (yy * 255 // max(height - 1, 1)) % 256
            rgb[..., 2] = ((xx // 8 + yy // 8 + i) % 2) * 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples = 48000 * frames // fps
            t = np.arange(samples) / 48000
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = tone[start : start + 1024]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                frame.sample_rate = 48000
                frame.pts = start
                frame.time_base = Fraction(1, 48000)
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def read_clip(path: Path) -> dict:
    """Size, frame count, codecs and the mean of the first frame, as the test sees them."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "video_codec": video.codec_context.name,
            "audio_codec": container.streams.audio[0].codec_context.name
            if container.streams.audio
            else None,
        }
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    info["frames"] = len(frames)
    info["first"] = frames[0] if frames else None
    return info


def png_bytes(width: int = 4, height: int = 3) -> bytes:
    """A real, tiny RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes([10, 200, 30]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
