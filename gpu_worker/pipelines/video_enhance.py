"""The default demo pipeline: video in, enhanced video out, no weights needed.

Per batch of frames, on the GPU when there is one: a motion-adaptive temporal denoise (each
frame is blended with the previous output where they agree, so static areas lose noise and
moving edges do not smear), an edge-aware unsharp mask (sharpening weighted by the luma
gradient, so flat areas and their noise are left alone), then a 2x bicubic upscale. Decoding
and encoding with PyAV: H.264 MP4 out, audio kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpu_worker.pipelines import Input, Pipeline, PipelineResult, Progress, RunContext
from gpu_worker.pipelines.video_params import VIDEO_ENCODING


class Enhancer:
    """The torch part: stateful across batches (the temporal filter needs the last frame)."""

    def __init__(self, device: str, scale: int, sharpen: float, denoise: float) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.scale, self.sharpen, self.denoise = scale, sharpen, denoise
        self.previous = None

    def __call__(self, batch):  # (N, H, W, 3) uint8 numpy -> same type, scaled
        torch = self.torch
        F = torch.nn.functional
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            x = self._temporal_denoise(x)
            # Sharpen before upscaling: the same look for a quarter of the pixels.
            x = self._edge_aware_sharpen(x)
            if self.scale > 1:
                x = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
            out = x.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
            return out.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def _temporal_denoise(self, x):
        if self.denoise <= 0:
            return x
        frames = []
        previous = self.previous
        for frame in x:
            if previous is not None:
                diff = (frame - previous).abs().mean(dim=0, keepdim=True)
                # Blend strongly where the frames agree (noise), not where they differ (motion).
                weight = self.denoise * 0.8 * self.torch.exp(-((diff / 0.06) ** 2))
                frame = frame * (1 - weight) + previous * weight
            frames.append(frame)
            previous = frame
        self.previous = previous
        return self.torch.stack(frames)

    def _edge_aware_sharpen(self, x):
        if self.sharpen <= 0:
            return x
        F = self.torch.nn.functional
        # A separable binomial blur (5 taps each way) and Sobel gradients by slicing: cheap on
        # CPU as well as GPU.
        padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
        h = padded[..., :, :-4] + 4 * padded[..., :, 1:-3] + 6 * padded[..., :, 2:-2]
        h = h + 4 * padded[..., :, 3:-1] + padded[..., :, 4:]
        blurred = (
            h[..., :-4, :]
            + 4 * h[..., 1:-3, :]
            + 6 * h[..., 2:-2, :]
            + 4 * h[..., 3:-1, :]
            + h[..., 4:, :]
        ) / 256.0
        luma = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        lp = F.pad(luma, (1, 1, 1, 1), mode="replicate")
        gx = lp[..., 1:-1, 2:] - lp[..., 1:-1, :-2]
        gy = lp[..., 2:, 1:-1] - lp[..., :-2, 1:-1]
        weight = ((gx * gx + gy * gy).sqrt_() / 0.15).clamp_(0.0, 1.0)
        return x + self.sharpen * weight * (x - blurred)


def load(model_dirs: dict[str, Path], device_setting: str) -> dict[str, Any]:
    """No weights: importing torch and picking the device is the warm-up (PRELOAD_PIPELINES)."""
    from gpu_worker.device import torch_device

    return {"device": torch_device(device_setting)}


def run(
    inputs: dict[str, Path], params: dict[str, Any], progress: Progress, ctx: RunContext
) -> PipelineResult:
    from gpu_worker.media import frame_progress, output_size, probe, transcode

    info = probe(inputs["video"], limit=ctx.frame_limit)
    width, height = output_size(info, params["scale"])
    enhancer = Enhancer(ctx.loaded["device"], params["scale"], params["sharpen"], params["denoise"])
    out = ctx.output_path(".mp4")

    frames = transcode(
        inputs["video"],
        out,
        enhancer,
        scale=params["scale"],
        limit=ctx.frame_limit,
        batch_size=params["batch_size"],
        crf=params["crf"],
        preset=params["preset"],
        max_frames=params["max_frames"],
        progress=frame_progress(progress),
        cancel=ctx.cancel,
    )
    return PipelineResult(
        result={
            "width": width,
            "height": height,
            "fps": float(info.fps),
            "frames": frames,
            "audio": info.has_audio,
            "device": str(enhancer.device),
        },
        output_file=out,
        content_type="video/mp4",
        frames=frames,
    )


PIPELINE = Pipeline(
    name="video_enhance",
    run=run,
    title="Video enhance",
    description="2x upscale, edge-aware sharpen and temporal denoise of a video (no weights).",
    help="A demo that needs no model download: bicubic 2x with sharpening and denoising.",
    inputs=(Input("video", ("video",)),),
    output={"video": "video/mp4"},
    params={
        "scale": {
            "type": "integer",
            "enum": [1, 2],
            "default": 2,
            "title": "Scale",
            "description": "upscale factor",
        },
        "sharpen": {
            "type": "number",
            "minimum": 0,
            "maximum": 3,
            "default": 0.6,
            "title": "Sharpen",
            "description": "edge-aware sharpening strength",
        },
        "denoise": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.5,
            "title": "Denoise",
            "description": "temporal denoise strength",
        },
        **VIDEO_ENCODING,
    },
    load=load,
)
