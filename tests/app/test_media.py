"""The upload probe refuses frames over the limit before anything decodes them
(docs/design.md invariant 13): the refusal names the limit, and the web process stays small."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from sqlalchemy import select

from app import media
from app.db import get_session
from app.models import Job
from tests.app.conftest import csrf_token, storage_files

ROOT = Path(__file__).resolve().parents[2]


def png(width: int, height: int, *, bit_depth: int = 8, color_type: int = 6) -> bytes:
    """A valid, highly compressed all-zero PNG (8000×8000 RGBA is ~250 KB)."""
    channels = {0: 1, 2: 3, 6: 4}[color_type]
    row = b"\x00" + bytes((width * channels * bit_depth + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def video(path: Path, width: int, height: int, codec: str = "mjpeg") -> Path:
    """A one-frame video of ``width``×``height`` (MJPEG in Matroska or H.264 in MP4)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=1)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), "rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def probe_in_subprocess(path: Path) -> dict:
    """Probe ``path`` in a fresh interpreter: its answer and how much its peak resident
    memory grew (ru_maxrss) across the probe alone, PyAV and the app already imported."""
    code = f"""
import json, resource, av
from app import media
from app.db import get_session
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    answer = repr(media.probe({str(path)!r}))
except media.TooLarge as exc:
    answer = "TooLarge: " + str(exc)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({{"answer": answer, "grown_mb": grown / 1024}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("rgba-8000.png", lambda p: p.write_bytes(png(8000, 8000))),
        ("1bit-16000.png", lambda p: p.write_bytes(png(16000, 16000, bit_depth=1, color_type=0))),
        ("mjpeg-8000.mkv", lambda p: video(p, 8000, 8000)),
        ("h264-8000x4000.mp4", lambda p: video(p, 8000, 4000, "libx264")),
    ],
)
def test_an_oversize_upload_is_refused_from_its_headers_without_decoding(tmp_path, name, make):
    path = tmp_path / name
    make(path)
    probed = probe_in_subprocess(path)
    assert probed["answer"].startswith("TooLarge: the file's frames are ")
    assert f"over the limit of {media.MAX_SIDE} pixels a side" in probed["answer"]
    # Decoding the smallest of these would take 250 MB (8000×8000 RGBA); the probe reads
    # headers, so it stays within a few megabytes of an idle interpreter.
    assert probed["grown_mb"] < 32, probed


def test_a_frame_within_the_limit_is_probed_as_before(tmp_path):
    path = tmp_path / "small.png"
    path.write_bytes(png(640, 480, color_type=2))
    assert media.probe(str(path)) == media.MediaInfo("image", 640, 480, "png_pipe", "png")
    clip = video(tmp_path / "small.mkv", 320, 240)
    info = media.probe(str(clip))
    assert (info.kind, info.width, info.height, info.codec) == ("video", 320, 240, "mjpeg")


def test_image_headers_are_read_for_each_format():
    assert media.image_header(png(16000, 9, color_type=0)) == ("png", 16000, 9)
    jpeg = b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc0\x00\x11\x08" + struct.pack(">HH", 700, 900)
    assert media.image_header(jpeg + b"\x03") == ("mjpeg", 900, 700)
    vp8x = b"RIFF\x00\x00\x00\x00WEBPVP8X" + bytes(8) + (4999).to_bytes(3, "little") * 2
    assert media.image_header(vp8x) == ("webp", 5000, 5000)
    assert media.image_header(b"\x89PNG\r\n\x1a\n") is None  # cut short: PyAV decides
    assert media.image_header(b"GIF89a") is None


def test_the_upload_form_answers_413_naming_the_limit_and_stores_nothing(app, client, settings):
    data = {
        "csrf_token": csrf_token(client),
        "pipeline": "upscale",
        "file": (io.BytesIO(png(8000, 8000)), "huge.png"),
    }
    response = client.post("/jobs", data=data, content_type="multipart/form-data")
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert "8000×8000" in page and f"{media.MAX_SIDE} pixels a side" in page
    with app.app_context():
        assert get_session().scalars(select(Job)).all() == []
    assert storage_files(settings) == []
