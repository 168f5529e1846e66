"""A pipeline with learned weights: ESPCN super-resolution on every frame of a video.

This is the template to copy for your own model: declare the hub repo in ``models()``, build
the network and load the weights in ``load()`` (it runs once per worker, in the background,
while jobs wait and report progress), and run it per batch in ``run()``.

The weights repo holds ``config.json`` (``{"scale": 2, "features": [64, 32]}``) and
``model.safetensors`` (the network's state dict). Which repo: ``SR_MODEL_REPO``,
``SR_MODEL_REVISION`` (pin a commit in production), both read when the worker starts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gpu_worker.errors import ModelLoadError
from gpu_worker.model_cache import ModelSpec
from gpu_worker.pipelines import Input, Pipeline, PipelineResult, Progress, RunContext
from gpu_worker.pipelines.video_params import VIDEO_ENCODING

DEFAULT_REPO = "gpu-jobs/espcn-x2"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def models() -> tuple[ModelSpec, ...]:
    return (
        ModelSpec(
            repo_id=os.environ.get("SR_MODEL_REPO", DEFAULT_REPO),
            revision=os.environ.get("SR_MODEL_REVISION", "main"),
            allow_patterns=(CONFIG, WEIGHTS),
        ),
    )


def build_network(scale: int = 2, features: tuple[int, int] = (64, 32)):
    """ESPCN (Shi et al. 2016): two feature convolutions, then a sub-pixel convolution."""
    from torch import nn

    first, second = features
    return nn.Sequential(
        nn.Conv2d(3, first, kernel_size=5, padding=2),
        nn.Tanh(),
        nn.Conv2d(first, second, kernel_size=3, padding=1),
        nn.Tanh(),
        nn.Conv2d(second, 3 * scale * scale, kernel_size=3, padding=1),
        nn.PixelShuffle(scale),
    )


def load(model_dirs: dict[str, Path], device_setting: str) -> dict[str, Any]:
    """Build the network from the downloaded config and weights, on the worker's device."""
    from safetensors.torch import load_file

    from gpu_worker.device import torch_device

    folder = next(iter(model_dirs.values()))
    try:
        config = json.loads((folder / CONFIG).read_text())
        scale = int(config.get("scale", 2))
        features = tuple(int(f) for f in config.get("features", (64, 32)))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{folder / CONFIG} is not a valid model config: {exc}") from None
    device = torch_device(device_setting)
    net = build_network(scale, features)  # type: ignore[arg-type]
    try:
        net.load_state_dict(load_file(str(folder / WEIGHTS)))
    except Exception as exc:  # noqa: BLE001 - safetensors and torch raise several kinds
        raise ModelLoadError(
            f"{folder / WEIGHTS} does not fit the ESPCN network in config.json: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from None
    return {"net": net.to(device).eval(), "scale": scale, "device": device}


def run(
    inputs: dict[str, Path], params: dict[str, Any], progress: Progress, ctx: RunContext
) -> PipelineResult:
    import torch

    from gpu_worker.media import frame_progress, output_size, probe, transcode

    net, scale, device = ctx.loaded["net"], ctx.loaded["scale"], ctx.loaded["device"]
    info = probe(inputs["video"])
    width, height = output_size(info, scale)

    def transform(batch):
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255.0)
            y = net(x).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
            return y.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    out = ctx.output_path(".mp4")
    frames = transcode(
        inputs["video"],
        out,
        transform,
        scale=scale,
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
            "frames": frames,
            "scale": scale,
            "model": models()[0].repo_id,
            "device": str(device),
        },
        output_file=out,
        content_type="video/mp4",
        frames=frames,
    )


PIPELINE = Pipeline(
    name="sr_learned",
    run=run,
    title="Learned super-resolution",
    description="ESPCN super-resolution with weights from the Hugging Face Hub (a template).",
    inputs=(Input("video", ("video",)),),
    output={"video": "video/mp4"},
    params=VIDEO_ENCODING,
    models=models,
    load=load,
)
