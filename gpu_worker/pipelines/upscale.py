"""Super-resolution with a public checkpoint, loaded by spandrel: video or image in.

spandrel recognises the architecture and its hyper-parameters from the checkpoint's state
dict (Real-ESRGAN's RRDBNet and compact SRVGGNet, SwinIR, HAT, SPAN, DAT and more), so any
super-resolution file it supports works here. Which file: ``UPSCALE_MODEL``, written
``repo:file@revision`` (revision optional; pin a commit in production), read when the worker
starts. The default is Real-ESRGAN x2 (RRDBNet with a pixel-unshuffle stem, BasicSR's key
names: ``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``, ``conv_up1/2``, ``conv_hr``,
``conv_last``; spandrel's ESRGAN architecture detects that layout).

Video: frames in batches, each frame cut into overlapping tiles (``tile`` pixels) so a 1080p
frame fits a 24 GB GPU, half precision on CUDA where the model supports it, H.264 out with
the audio kept. Images (PNG, JPEG, WebP): the same format out.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
import types
import warnings
from pathlib import Path
from typing import Any

from gpu_worker.errors import InputError, ModelLoadError, WorkerConfigError
from gpu_worker.pipelines import (
    SAME,
    Input,
    ModelSpec,
    Pipeline,
    PipelineResult,
    Progress,
    RunContext,
)
from gpu_worker.pipelines.video_params import VIDEO_ENCODING

log = logging.getLogger("gpu_worker.upscale")

DEFAULT_MODEL = "ai-forever/Real-ESRGAN:RealESRGAN_x2.pth"
SETTING = "UPSCALE_MODEL"
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


def model_setting() -> tuple[str, str, str]:
    """(repo, file, revision) from ``UPSCALE_MODEL`` (``repo:file@revision``).

    A pipeline's own knob, read by the pipeline that declares it (the worker's settings
    object knows no pipeline, and the catalogue is written from these declarations)."""
    raw = os.environ.get(SETTING, "").strip() or DEFAULT_MODEL
    spec, _, revision = raw.partition("@")
    repo, _, filename = spec.partition(":")
    if repo.count("/") != 1 or not filename.endswith(WEIGHT_SUFFIXES) or "/" in revision:
        raise WorkerConfigError(
            f"{SETTING}={raw!r}: write it as org/repo:file.pth@revision (revision optional), "
            f"e.g. {DEFAULT_MODEL}@main; the file must be one of {', '.join(WEIGHT_SUFFIXES)}"
        )
    return repo, filename, revision or "main"


def models() -> tuple[ModelSpec, ...]:
    repo, filename, revision = model_setting()
    return (ModelSpec(repo_id=repo, revision=revision, allow_patterns=(filename,)),)


def import_spandrel() -> Any:
    """``import spandrel``, tolerating a torchvision that cannot load.

    spandrel imports torchvision at import time, for two architectures only (RestoreFormer
    face restoration and LaMa inpainting), never for super-resolution. Beside a CPU-only torch
    (this repository's dev install) PyPI's torchvision is a CUDA build whose C++ ops do not
    load, and importing it raises. Then a stand-in module takes its place, so the SR
    architectures load and those two refuse with a clear error. In the GPU image torch and
    torchvision are matching CUDA builds and this does nothing.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchvision.transforms.functional  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - an ImportError or torch's RuntimeError
        log.info("torchvision is not usable (%s); spandrel's torchvision models are off", exc)
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]

        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise ModelLoadError("this model needs torchvision, which does not load here")

        functional = types.ModuleType("torchvision.transforms.functional")
        functional.normalize = functional.rotate = unavailable  # type: ignore[attr-defined]
        functional.InterpolationMode = enum.Enum(  # type: ignore[attr-defined]
            "InterpolationMode", {"NEAREST": "nearest", "BILINEAR": "bilinear"}
        )
        transforms = types.ModuleType("torchvision.transforms")
        transforms.functional = functional  # type: ignore[attr-defined]
        root = types.ModuleType("torchvision")
        root.transforms = transforms  # type: ignore[attr-defined]
        sys.modules.update(
            {
                "torchvision": root,
                "torchvision.transforms": transforms,
                "torchvision.transforms.functional": functional,
            }
        )
    import spandrel

    return spandrel


def load(model_dirs: dict[str, Path], device_setting: str) -> dict[str, Any]:
    """Let spandrel build the network from the checkpoint, on the worker's device."""
    import torch

    from gpu_worker.device import torch_device

    spandrel = import_spandrel()
    repo, filename, revision = model_setting()
    path = next(iter(model_dirs.values())) / filename
    try:
        descriptor = spandrel.ModelLoader().load_from_file(path)
    except spandrel.UnsupportedModelError:
        raise ModelLoadError(
            f"{repo}/{filename} is not an architecture spandrel knows; point {SETTING} at a "
            "super-resolution checkpoint spandrel supports (Real-ESRGAN, SwinIR, HAT, ...)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch.load and safetensors raise several kinds
        raise ModelLoadError(
            f"{repo}/{filename} could not be read as a checkpoint: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        ) from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.input_channels != 3:
        raise ModelLoadError(
            f"{repo}/{filename} is a {descriptor.architecture.name} model for "
            f"{descriptor.purpose}, not an RGB image-to-image one; choose an SR checkpoint"
        )
    device = torch.device(torch_device(device_setting))
    descriptor.to(device).eval()
    half = device.type == "cuda" and descriptor.supports_half
    if half:
        descriptor.half()
    log.info(
        "upscale: %s/%s@%s is %s x%d (%s) on %s%s",
        repo,
        filename,
        revision,
        descriptor.architecture.name,
        descriptor.scale,
        ", ".join(descriptor.tags),
        device,
        " in fp16" if half else "",
    )
    return {
        "model": descriptor,
        "scale": descriptor.scale,
        "device": device,
        "dtype": torch.float16 if half else torch.float32,
        "name": f"{repo}/{filename}@{revision}",
        "architecture": descriptor.architecture.name,
    }


def upscale_tiled(model: Any, x: Any, scale: int, tile: int, overlap: int = 16) -> Any:
    """``model`` over ``x`` (N, C, H, W) in tiles of at most ``tile`` pixels a side, each
    read with ``overlap`` pixels of context so the seams do not show; 0: whole frames."""
    n, c, h, w = x.shape
    if not tile or (h <= tile and w <= tile):
        return model(x)
    out = x.new_empty((n, c, h * scale, w * scale))
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
            b0, r0 = min(bottom + overlap, h), min(right + overlap, w)
            y = model(x[:, :, t0:b0, l0:r0])
            dy, dx = (top - t0) * scale, (left - l0) * scale
            out[:, :, top * scale : bottom * scale, left * scale : right * scale] = y[
                :, :, dy : dy + (bottom - top) * scale, dx : dx + (right - left) * scale
            ]
    return out


def _transform(loaded: dict[str, Any], tile: int):
    import torch

    model, device, dtype, scale = (
        loaded["model"],
        loaded["device"],
        loaded["dtype"],
        loaded["scale"],
    )

    def transform(batch):  # (N, H, W, 3) uint8 numpy -> (N, H*s, W*s, 3) uint8
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).to(dtype).div_(255.0)
            y = upscale_tiled(model, x, scale, tile)
            y = y.float().clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
            return y.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    return transform


def run(
    inputs: dict[str, Path], params: dict[str, Any], progress: Progress, ctx: RunContext
) -> PipelineResult:
    from gpu_worker import media

    loaded = ctx.loaded
    scale = loaded["scale"]
    transform = _transform(loaded, params["tile"])
    source = inputs["file"]
    about = {
        "scale": scale,
        "model": loaded["name"],
        "architecture": loaded["architecture"],
        "device": str(loaded["device"]),
        "half": str(loaded["dtype"]) == "torch.float16",
    }
    if media.is_image(source, limit=ctx.frame_limit):
        rgb, codec = media.read_image(source, "inputs.file", limit=ctx.frame_limit)
        height, width = rgb.shape[0] * scale, rgb.shape[1] * scale
        if max(height, width) > media.MAX_OUTPUT_SIDE:
            raise InputError(
                f"inputs.file: {rgb.shape[1]}x{rgb.shape[0]} upscaled {scale}x is over "
                f"{media.MAX_OUTPUT_SIDE} pixels a side; send a smaller image"
            )
        progress({"phase": "inference", "percent": 0, "message": "upscaling the image"}, True)
        out_rgb = transform(rgb[None])[0]
        out = ctx.output_path(media.IMAGE_CODECS[codec][1])
        content_type = media.write_image(out_rgb, out, codec)
        return PipelineResult(
            result={**about, "width": width, "height": height, "kind": "image"},
            output_file=out,
            content_type=content_type,
            items=1,
        )
    info = media.probe(source, "inputs.file", limit=ctx.frame_limit)
    width, height = media.output_size(info, scale)
    out = ctx.output_path(".mp4")
    frames = media.transcode(
        source,
        out,
        transform,
        scale=scale,
        limit=ctx.frame_limit,
        field="inputs.file",
        batch_size=params["batch_size"],
        crf=params["crf"],
        preset=params["preset"],
        max_frames=params["max_frames"],
        progress=media.frame_progress(progress),
        cancel=ctx.cancel,
    )
    return PipelineResult(
        result={
            **about,
            "width": width,
            "height": height,
            "frames": frames,
            "fps": float(info.fps),
            "audio": info.has_audio,
            "kind": "video",
        },
        output_file=out,
        content_type="video/mp4",
        frames=frames,
    )


PIPELINE = Pipeline(
    name="upscale",
    run=run,
    title="Upscale (Real-ESRGAN)",
    description="Learned super-resolution of a video or an image (Real-ESRGAN x2 by default).",
    help=(
        "Runs a public super-resolution checkpoint loaded by spandrel; the operator picks it "
        "with UPSCALE_MODEL (repo:file@revision)."
    ),
    inputs=(Input("file", ("video", "image")),),
    output={"video": "video/mp4", "image": SAME},
    params={
        "tile": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2048,
            "default": 512,
            "title": "Tile size",
            "description": "process each frame in tiles of this many pixels (0: whole frames); "
            "smaller uses less GPU memory",
        },
        **VIDEO_ENCODING,
        "batch_size": {**VIDEO_ENCODING["batch_size"], "default": 4},
    },
    models=models,
    load=load,
)
