"""``python -m gpu_worker.pipelines new NAME``: a new pipeline module, registered.

Writes ``gpu_worker/pipelines/NAME.py`` from ``TEMPLATE`` (a working pipeline for video and
images that you then turn into your model) and adds its line to ``_MODULES``. The app learns
of it from ``app/pipelines.json`` (``make catalogue``, which ``make run`` does).
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
REGISTRY = HERE / "__init__.py"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MARKER = "_MODULES: dict[str, str] = {\n"
# In the template, image outputs are SAME: the input's own image type.
SAME_TEXT = "SAME"


class ScaffoldError(ValueError):
    """The name or kinds cannot make a pipeline; the message says why."""


TEMPLATE = '''"""{name}: your model behind the upload page.

Every part the app reads is declared below in ``PIPELINE`` (title, help, input kinds, output
and parameters as JSON Schema); the worker validates each job against it and the form shows
it. Until you put your model in, ``run`` applies a colour tint so the pipeline works end to
end. Replace, in order:

1. ``models()``: the checkpoint(s) to download, e.g.
   ``ModelSpec(repo_id="org/name", revision="<commit>", allow_patterns=("model.pth",))``.
2. ``load()``: build the network from the downloaded folder (``model_dirs[repo_id]``) on the
   device; it runs once per worker, in the background. For a super-resolution or restoration
   checkpoint spandrel knows, ``gpu_worker.pipelines.upscale.load`` is a working example.
3. ``apply()``: run the model on a batch of RGB frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpu_worker.pipelines import {imports}
from gpu_worker.pipelines.video_params import VIDEO_ENCODING


def models() -> tuple[ModelSpec, ...]:
    """The hub files this pipeline needs (none yet)."""
    return ()


def load(model_dirs: dict[str, Path], device_setting: str) -> dict[str, Any]:
    """Turn the downloaded files into something runnable, on the worker's device."""
    import torch

    from gpu_worker.device import torch_device

    return {{"device": torch.device(torch_device(device_setting))}}


def apply(loaded: dict[str, Any], params: dict[str, Any]):
    """A function from a batch of frames, (N, H, W, 3) uint8, to the result frames."""
    import torch

    device = loaded["device"]
    tint = torch.tensor([1.0, 0.85, 0.6], device=device).view(1, 3, 1, 1)

    def transform(batch):
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255.0)
            strength = params["strength"]
            y = x * (1 - strength) + x * tint * strength
            y = y.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
            return y.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    return transform


def run(
    inputs: dict[str, Path], params: dict[str, Any], progress: Progress, ctx: RunContext
) -> PipelineResult:
    from gpu_worker import media

    transform = apply(ctx.loaded, params)
    source = inputs["file"]
    if media.is_image(source, limit=ctx.frame_limit):
        rgb, codec = media.read_image(source, limit=ctx.frame_limit)
        out = ctx.output_path(media.IMAGE_CODECS[codec][1])
        content_type = media.write_image(transform(rgb[None])[0], out, codec)
        return PipelineResult(
            result={{"kind": "image"}}, output_file=out, content_type=content_type, items=1
        )
    out = ctx.output_path(".mp4")
    frames = media.transcode(
        source,
        out,
        transform,
        scale=1,
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
        result={{"kind": "video", "frames": frames}},
        output_file=out,
        content_type="video/mp4",
        frames=frames,
    )


PIPELINE = Pipeline(
    name="{name}",
    run=run,
    title="{title}",
    description="A new pipeline: describe what it does in one line.",
    help="Shown above the parameters on the upload form.",
    inputs=(Input("file", {kinds}),),
    output={output},
    params={{
        "strength": {{
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.5,
            "title": "Strength",
            "description": "how strongly to apply the effect",
        }},
        **VIDEO_ENCODING,
    }},
    models=models,
    load=load,
)
'''


def create(name: str, kinds: tuple[str, ...], folder: Path = HERE) -> list[str]:
    """Write the module and register it; return what to do next, line by line."""
    if not NAME_RE.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r}: use a lower_case name like my_model (a-z, 0-9, _)")
    bad = [kind for kind in kinds if kind not in ("video", "image")]
    if bad or not kinds:
        raise ScaffoldError(f"--kinds {','.join(kinds)}: give video, image or video,image")
    module = folder / f"{name}.py"
    registry = folder / "__init__.py"
    text = registry.read_text()
    if module.exists() or f'"{name}":' in text:
        raise ScaffoldError(f"a pipeline called {name} exists already ({module})")
    if MARKER not in text:
        raise ScaffoldError(f"cannot find _MODULES in {registry}; add the line by hand")
    output = {"video": '"video/mp4"', "image": SAME_TEXT}
    module.write_text(
        TEMPLATE.format(
            name=name,
            title=name.replace("_", " ").capitalize(),
            kinds="(" + ", ".join(f'"{k}"' for k in kinds) + ("," if len(kinds) == 1 else "") + ")",
            imports=", ".join(
                (["SAME"] if "image" in kinds else [])
                + ["Input", "ModelSpec", "Pipeline", "PipelineResult", "Progress", "RunContext"]
            ),
            output="{" + ", ".join(f'"{k}": {output[k]}' for k in kinds) + "}",
        )
    )
    line = f'    "{name}": "gpu_worker.pipelines.{name}",\n'
    registry.write_text(text.replace(MARKER, MARKER + line, 1))
    return [
        f"wrote {module}",
        f"registered {name} in {registry} (_MODULES)",
        "next: make catalogue (make run does it), then enable it:",
        f"  PIPELINES=video_enhance,upscale,echo,{name} make run",
    ]
