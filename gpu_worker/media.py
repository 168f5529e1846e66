"""Video in and out with PyAV: decode in batches, hand each batch to a transform, encode
H.264 MP4 with the audio kept (re-encoded to AAC)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from gpu_worker import imagesize
from gpu_worker.errors import InputError, JobCancelled
from gpu_worker.pipelines import FrameLimit

log = logging.getLogger("gpu_worker.media")

# PyAV's names for single-image containers end in _pipe (png_pipe, jpeg_pipe, webp_pipe...).
IMAGE_FORMATS = {"image2"}
# The image formats pipelines read and write: PyAV codec -> (content type, suffix, pix_fmt).
IMAGE_CODECS = {
    "png": ("image/png", ".png", "rgb24"),
    "mjpeg": ("image/jpeg", ".jpg", "yuvj444p"),
    "webp": ("image/webp", ".webp", "yuv420p"),
}
ENCODERS = {"png": "png", "mjpeg": "mjpeg", "webp": "libwebp"}
# libx264 and most players stop at 8K.
MAX_OUTPUT_SIDE = 8192
# Codecs whose every packet is a whole image with its own header: each packet's frame size is
# read before the decoder sees it (a stream may declare 64×64 and then send 12000×12000).
SELF_DESCRIBING_CODECS = {"mjpeg", "png", "webp"}
# Decoders that, told to skip every frame, read its size from the headers without allocating
# it (PNG's, for one, decodes anyway).
SKIP_AWARE = {"mjpeg", "h264", "hevc"}

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


def decoder_options(limit: FrameLimit) -> dict[str, str]:
    """FFmpeg's ``max_pixels`` for ``limit``: a decoder refuses a larger frame before it
    allocates it. Decoders check the width rounded up to their stride alignment (at most 64),
    hence the slack; the exact limit is checked on each decoded frame."""
    return {"max_pixels": str(limit.pixels + 64 * limit.side)}


def _open(path: Path, limit: FrameLimit) -> Any:
    """``av.open`` for reading. Its probing decoders (``avformat_find_stream_info``) are told
    to skip frames, which those in ``SKIP_AWARE`` obey by reading only headers, and get
    ``max_pixels`` for those that decode anyway. The stream's own decoder, used later, gets
    neither of these: callers give it ``decoder_options``."""
    import av

    return av.open(str(path), options={**decoder_options(limit), "skip_frame": "all"})


def _declared_size(path: Path, codec: str) -> tuple[int, int]:
    """The frame size a stream declares, for a stream whose probe ``max_pixels`` refused (it
    then reads 0×0): opened again without it, only for decoders that skip frames."""
    import av

    if codec not in SKIP_AWARE:
        return 0, 0
    with av.open(str(path), options={"skip_frame": "all"}) as container:
        context = container.streams.video[0].codec_context
        return context.width, context.height


def _an_image(field: str) -> InputError:
    return InputError(
        f"{field}: this is an image, not a video; send a video, or use a pipeline that takes images"
    )


def probe(path: Path, field: str = "inputs.video", *, limit: FrameLimit) -> VideoInfo:
    """The video's size, rate and frame count; ``InputError`` when it is not a video or its
    declared frame size is over ``limit``."""
    import av

    if imagesize.file_size_of(path) is not None:
        raise _an_image(field)
    try:
        with _open(path, limit) as container:
            if not container.streams.video:
                raise InputError(f"{field}: the file has no video stream")
            stream = container.streams.video[0]
            if is_image_format(container.format.name):
                raise _an_image(field)
            width, height = stream.codec_context.width, stream.codec_context.height
            if not width or not height:
                width, height = _declared_size(path, stream.codec_context.name)
                limit.check(field, width, height)
            if not width or not height:
                # The container does not say, and the probing decoder refused the first frame.
                raise InputError(
                    f"{field}: the video's frame size could not be read, or its first frame "
                    f"is over the {limit.side}×{limit.side} limit of {limit.owner}"
                )
            limit.check(field, width, height)
            fps = stream.average_rate or stream.guessed_rate or Fraction(25)
            frames = stream.frames or None
            if frames is None and stream.duration and stream.time_base:
                frames = int(stream.duration * stream.time_base * fps) or None
            return VideoInfo(
                width=width,
                height=height,
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


def is_image_format(name: str) -> bool:
    return name in IMAGE_FORMATS or name.endswith("_pipe")


def is_image(path: Path, *, limit: FrameLimit) -> bool:
    """Whether the file is a still image (PNG, JPEG, WebP...) rather than a video."""
    import av

    if imagesize.file_size_of(path) is not None:
        return True  # told by its header, without opening a decoder
    try:
        with _open(path, limit) as container:
            return is_image_format(container.format.name)
    except av.error.FFmpegError:
        return False


def read_image(
    path: Path, field: str = "inputs.file", *, limit: FrameLimit
) -> tuple[np.ndarray, str]:
    """The image as RGB (H, W, 3 uint8) and its codec (png, mjpeg or webp). Its size is
    checked against ``limit`` from its header, before it is decoded."""
    import av

    size = imagesize.file_size_of(path)
    if size is not None:
        limit.check(field, *size)
    try:
        with _open(path, limit) as container:
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            if codec not in IMAGE_CODECS:
                raise InputError(f"{field}: a {codec} image; send PNG, JPEG or WebP")
            stream.codec_context.options = decoder_options(limit)
            frame = next(container.decode(stream))
            limit.check(field, frame.width, frame.height)
            return frame.to_ndarray(format="rgb24"), codec
    except av.error.ArgumentError:
        # max_pixels: the decoder refused a frame over the limit (a header we cannot read).
        raise InputError(
            f"{field}: the image is larger than the {limit.side}×{limit.side} limit of "
            f"{limit.owner}; send a smaller image"
        ) from None
    except (av.error.FFmpegError, StopIteration, IndexError) as exc:
        log.warning("%s could not be read as an image: %s", field, exc)
        raise InputError(f"{field}: the input is not a readable PNG, JPEG or WebP image") from None


def write_image(rgb: np.ndarray, path: Path, codec: str) -> str:
    """Write RGB pixels as one image in ``codec``; return its content type."""
    import av

    content_type, _, pix_fmt = IMAGE_CODECS[codec]
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream(ENCODERS[codec], rate=1)
        stream.height, stream.width = rgb.shape[:2]
        stream.pix_fmt = pix_fmt
        stream.options = {"mjpeg": {"qscale": "2"}, "webp": {"quality": "90"}}.get(codec, {})
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return content_type


def output_size(info: VideoInfo, scale: int) -> tuple[int, int]:
    """Even output dimensions (yuv420p needs them), checked against the encoder's limit."""
    width, height = info.width * scale // 2 * 2, info.height * scale // 2 * 2
    if max(width, height) > MAX_OUTPUT_SIDE:
        raise InputError(
            f"params.scale: {scale}x of {info.width}x{info.height} is {width}x{height}, over the "
            f"{MAX_OUTPUT_SIDE}-pixel limit; use a smaller scale or a smaller video"
        )
    return width, height


@dataclass
class _FrameReader:
    """The input side of ``transcode``: each video packet decoded under ``limit`` and each
    decoded frame checked before it becomes an array."""

    stream: Any
    info: VideoInfo
    limit: FrameLimit
    field: str
    seen: int = 0  # video packets read, for messages

    def __post_init__(self) -> None:
        self.stream.thread_type = "AUTO"
        self.stream.codec_context.options = decoder_options(self.limit)
        self.measure_packets = self.stream.codec_context.name in SELF_DESCRIBING_CODECS

    def decode(self, packet: Any) -> list[Any]:
        import av

        self.seen += 1
        where = f" (frame {self.seen})"
        if self.measure_packets:
            size = imagesize.size_of(bytes(packet))
            if size is not None:
                self.limit.check(self.field, *size, where=where)
        try:
            return packet.decode()
        except av.error.ArgumentError:
            # max_pixels: the decoder refused to allocate a frame over the limit.
            raise InputError(
                f"{self.field}: frame {self.seen} is larger than the {self.limit.side}×"
                f"{self.limit.side} limit of {self.limit.owner}; send a video no larger than that"
            ) from None

    def check(self, frame: Any, number: int) -> None:
        info = self.info
        self.limit.check(self.field, frame.width, frame.height, f" (frame {number})")
        if (frame.width, frame.height) != (info.width, info.height):
            raise InputError(
                f"{self.field}: frame {number} is "
                f"{frame.width}×{frame.height} in a {info.width}×{info.height} "
                "video; frames that change size are not supported"
            )


@dataclass
class _FrameWriter:
    """The output side of ``transcode``: frames gathered into batches, each batch passed
    through ``transform`` and encoded in order, audio re-encoded as it comes."""

    out: Any
    video: Any
    audio: Any | None
    transform: BatchTransform
    fps: Fraction
    size: tuple[int, int]
    batch_size: int
    total: int | None
    progress: FrameProgress | None
    cancel: threading.Event | None
    done: int = 0
    batch: list[np.ndarray] = dataclasses.field(default_factory=list)

    def add(self, rgb: np.ndarray) -> None:
        self.batch.append(rgb)
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise JobCancelled("the job was cancelled while it ran")
        for frame_rgb in self.transform(np.stack(self.batch)):
            self._encode(frame_rgb)
        self.batch.clear()
        if self.progress:
            self.progress(self.done, self.total)

    def _encode(self, frame_rgb: np.ndarray) -> None:
        import av

        width, height = self.size
        if frame_rgb.shape[0] != height or frame_rgb.shape[1] != width:
            frame_rgb = frame_rgb[:height, :width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
        frame.pts = self.done
        frame.time_base = Fraction(1) / self.fps
        self.out.mux(self.video.encode(frame))
        self.done += 1

    def add_audio(self, packet: Any) -> None:
        for frame in packet.decode():
            frame.pts = None
            self.out.mux(self.audio.encode(frame))

    def finish(self) -> None:
        if self.batch:
            self.flush()
        self.out.mux(self.video.encode(None))
        if self.audio is not None:
            self.out.mux(self.audio.encode(None))


def _video_stream(out: Any, fps: Fraction, size: tuple[int, int], crf: int, preset: str) -> Any:
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": str(crf), "preset": preset}
    return stream


def _audio_stream(out: Any, ain: Any | None) -> Any | None:
    """An AAC stream for the input's audio, or None when it has none (or no sample rate)."""
    if ain is None or not ain.codec_context.sample_rate:
        return None
    stream = out.add_stream("aac", rate=ain.codec_context.sample_rate)
    stream.layout = ain.codec_context.layout.name
    return stream


def _frame_total(info: VideoInfo, max_frames: int) -> int | None:
    if max_frames and (info.frames is None or max_frames < info.frames):
        return max_frames
    return info.frames


def _read_video(packet: Any, reader: _FrameReader, writer: _FrameWriter, max_frames: int) -> bool:
    """Batch the packet's frames; True once ``max_frames`` frames are taken (the rest of the
    file is then never decoded)."""
    for frame in reader.decode(packet):
        taken = writer.done + len(writer.batch)
        if max_frames and taken >= max_frames:
            return True
        reader.check(frame, taken + 1)
        writer.add(frame.to_ndarray(format="rgb24"))
    return bool(max_frames) and writer.done + len(writer.batch) >= max_frames


def _pump(inp: Any, reader: _FrameReader, writer: _FrameWriter, ain: Any, max_frames: int) -> None:
    """Demux the input, video into batches and audio straight through, until it ends or
    ``max_frames`` are taken; ``writer.finish`` flushes a partial last batch."""
    streams = [reader.stream] + ([ain] if writer.audio is not None else [])
    for packet in inp.demux(*streams):
        if packet.stream is reader.stream:
            if _read_video(packet, reader, writer, max_frames):
                break
        elif writer.audio is not None:
            writer.add_audio(packet)


def transcode(
    src: Path,
    dst: Path,
    transform: BatchTransform,
    *,
    scale: int,
    limit: FrameLimit,
    field: str = "inputs.video",
    batch_size: int = 8,
    crf: int = 20,
    preset: str = "veryfast",
    max_frames: int = 0,
    progress: FrameProgress | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Decode ``src``, pass RGB batches (N, H, W, 3 uint8) through ``transform``, which
    returns them ``scale`` times larger, and write H.264/AAC MP4 to ``dst``. Returns frames.

    Every frame is held to ``limit`` while decoding, before it is allocated: the decoder gets
    ``max_pixels``, the packets of MJPEG/PNG/WebP streams are measured from their headers,
    and each decoded frame's size is checked before it becomes an array. Batches hold at most
    ``limit.batch_pixels``."""
    import av

    info = probe(src, field, limit=limit)
    size = output_size(info, scale)
    with _open(src, limit) as inp, av.open(str(dst), "w", format="mp4") as out:
        reader = _FrameReader(inp.streams.video[0], info, limit, field)
        ain = inp.streams.audio[0] if inp.streams.audio else None
        video = _video_stream(out, info.fps, size, crf, preset)
        writer = _FrameWriter(
            out=out,
            video=video,
            audio=_audio_stream(out, ain),
            transform=transform,
            fps=info.fps,
            size=size,
            batch_size=limit.batch_for(info.width, info.height, batch_size),
            total=_frame_total(info, max_frames),
            progress=progress,
            cancel=cancel,
        )
        _pump(inp, reader, writer, ain, max_frames)
        writer.finish()
    return writer.done
