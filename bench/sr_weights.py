"""Tiny super-resolution checkpoints of architectures spandrel recognises, made here (the
tests' fake hub and the GPU benchmarks serve them; no download).

- ``realesrgan_x2_pth``: the layout of Real-ESRGAN's ``RealESRGAN_x2.pth`` (BasicSR's RRDBNet
  key names, a pixel-unshuffle stem taking 12 channels, two upsampling convolutions, the
  weights under ``params_ema``), only much smaller: 8 features, one block.
- ``compact_safetensors``: Real-ESRGAN's compact video model (SRVGGNetCompact) as safetensors.

Weights are random but small, so outputs stay in range and differ from a plain resize.
"""

from __future__ import annotations

import io


def _rrdbnet_state(features: int, blocks: int, grow: int = 32, seed: int = 0) -> dict:
    import torch

    generator = torch.Generator().manual_seed(seed)

    def conv(out_ch: int, in_ch: int) -> dict:
        weight = torch.randn(out_ch, in_ch, 3, 3, generator=generator) * 0.02
        return {"weight": weight, "bias": torch.zeros(out_ch)}

    layers: dict[str, dict] = {"conv_first": conv(features, 3 * 4)}
    for b in range(blocks):
        for r in (1, 2, 3):
            for c in range(1, 6):
                out_ch = features if c == 5 else grow
                layers[f"body.{b}.rdb{r}.conv{c}"] = conv(out_ch, features + (c - 1) * grow)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        layers[name] = conv(features, features)
    layers["conv_last"] = conv(3, features)
    # Identity-ish output: the last layer adds a mean colour so frames are not black.
    layers["conv_last"]["bias"] = torch.full((3,), 0.5)
    return {f"{name}.{kind}": t for name, ts in layers.items() for kind, t in ts.items()}


def realesrgan_x2_pth(features: int = 8, blocks: int = 1) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"params_ema": _rrdbnet_state(features, blocks)}, buffer)
    return buffer.getvalue()


def compact_safetensors(features: int = 8, convs: int = 2, scale: int = 2) -> bytes:
    import torch
    from safetensors.torch import save

    from gpu_worker.pipelines.upscale import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=features, num_conv=convs, upscale=scale)
    return save({k: v.contiguous() for k, v in net.state_dict().items()})
