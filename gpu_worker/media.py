"""Video in and out with PyAV: decode in batches, hand each batch to a transform, encode
H.264 MP4 with the audio kept (re-encoded to AAC)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from gpu_worker.errors import InputError, JobCancelled

log = logging.getLogger("gpu_worker.media")

# PyAV's names for single-image containers: a video pipeline refuses these.
IMAGE_FORMATS = {"png_pipe", "jpeg_pipe", "webp_pipe", "image2"}
# libx264 and most players stop at 8K.
MAX_OUTPUT_SIDE = 8192

BatchTransform = Callable[[np.ndarray], np.ndarray]
FrameProgress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int | None
    has_audio: bool


def frame_progress(progress: Callable[[dict[str, Any]], None]) -> FrameProgress:
    """A ``transcode`` progress callback that reports per batch, in the job's status."""

    def report(done: int, total: int | None) -> None:
        update: dict[str, Any] = {"phase": "inference", "frames_done": done}
        if total:
            update["frames_total"] = total
            update["percent"] = round(100 * min(done, total) / total, 1)
            update["message"] = f"processing frames: {done} of {total}"
        else:
            update["message"] = f"processing frames: {done}"
        progress(update)

    return report


def probe(path: Path, field: str = "inputs.video") -> VideoInfo:
    """The video's size, rate and frame count; ``InputError`` when it is not a video."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{field}: the file has no video stream")
            stream = container.streams.video[0]
            if container.format.name in IMAGE_FORMATS:
                raise InputError(
                    f"{field}: this is an image, not a video; send a video, or use a "
                    "pipeline that takes images"
                )
            fps = stream.average_rate or stream.guessed_rate or Fraction(25)
            frames = stream.frames or None
            if frames is None and stream.duration and stream.time_base:
                frames = int(stream.duration * stream.time_base * fps) or None
            return VideoInfo(
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                fps=Fraction(fps),
                frames=frames,
                has_audio=bool(container.streams.audio),
            )
    except av.error.FFmpegError as exc:
        # FFmpeg's text names the job's temp path and an errno: the log gets it, people don't.
        log.warning("%s could not be opened as a video: %s", field, exc)
        raise InputError(
            f"{field}: the input is not a readable video file; upload a video that plays "
            "(H.264 MP4 works everywhere)"
        ) from None


def output_size(info: VideoInfo, scale: int) -> tuple[int, int]:
    """Even output dimensions (yuv420p needs them), checked against the encoder's limit."""
    width, height = info.width * scale // 2 * 2, info.height * scale // 2 * 2
    if max(width, height) > MAX_OUTPUT_SIDE:
        raise InputError(
            f"params.scale: {scale}x of {info.width}x{info.height} is {width}x{height}, over the "
            f"{MAX_OUTPUT_SIDE}-pixel limit; use a smaller scale or a smaller video"
        )
    return width, height


def transcode(
    src: Path,
    dst: Path,
    transform: BatchTransform,
    *,
    scale: int,
    batch_size: int = 8,
    crf: int = 20,
    preset: str = "veryfast",
    max_frames: int = 0,
    progress: FrameProgress | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Decode ``src``, pass RGB batches (N, H, W, 3 uint8) through ``transform``, which
    returns them ``scale`` times larger, and write H.264/AAC MP4 to ``dst``. Returns frames."""
    import av

    info = probe(src)
    width, height = output_size(info, scale)
    total = info.frames
    if max_frames and (total is None or max_frames < total):
        total = max_frames
    done = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        ain = inp.streams.audio[0] if inp.streams.audio else None
        vout = out.add_stream("libx264", rate=info.fps)
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        vout.options = {"crf": str(crf), "preset": preset}
        aout = None
        if ain is not None and ain.codec_context.sample_rate:
            aout = out.add_stream("aac", rate=ain.codec_context.sample_rate)
            aout.layout = ain.codec_context.layout.name
        batch: list[np.ndarray] = []

        def flush() -> None:
            nonlocal done
            if cancel is not None and cancel.is_set():
                raise JobCancelled("the job was cancelled while it ran")
            result = transform(np.stack(batch))
            for frame_rgb in result:
                if frame_rgb.shape[0] != height or frame_rgb.shape[1] != width:
                    frame_rgb = frame_rgb[:height, :width]
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
                frame.pts = done
                frame.time_base = Fraction(1) / info.fps
                out.mux(vout.encode(frame))
                done += 1
            batch.clear()
            if progress:
                progress(done, total)

        streams = [vin] + ([ain] if aout is not None else [])
        stop = False
        for packet in inp.demux(*streams):
            if packet.stream is vin:
                for frame in packet.decode():
                    if max_frames and done + len(batch) >= max_frames:
                        stop = True
                        break
                    batch.append(frame.to_ndarray(format="rgb24"))
                    if len(batch) >= batch_size:
                        flush()
            elif aout is not None:
                for frame in packet.decode():
                    if stop:
                        break
                    frame.pts = None
                    out.mux(aout.encode(frame))
            if stop and not batch:
                break
        if batch:
            flush()
        out.mux(vout.encode(None))
        if aout is not None:
            out.mux(aout.encode(None))
    return done
