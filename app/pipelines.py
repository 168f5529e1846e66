"""The pipelines this app offers and how their parameters are checked.

The GPU worker runs elsewhere and is not imported here; this catalogue mirrors the
parameters of the pipelines in ``gpu_worker/pipelines`` so bad parameters are refused at
upload time (400) instead of failing on a GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ParamError(ValueError):
    """A parameter is unknown, of the wrong type or out of range; the message says which."""


@dataclass(frozen=True)
class Param:
    kind: type
    help: str
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = 500
    choices: tuple = ()

    def parse(self, name: str, raw: Any) -> Any:
        value = self._parse(name, raw)
        if self.choices and value not in self.choices:
            options = ", ".join(str(c) for c in self.choices)
            raise ParamError(f"parameter {name!r} must be one of {options}")
        return value

    def _parse(self, name: str, raw: Any) -> Any:
        if self.kind is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off", ""):
                return False
            raise ParamError(f"parameter {name!r} must be true or false")
        if self.kind in (int, float):
            if isinstance(raw, bool):
                raise ParamError(f"parameter {name!r} must be a number")
            try:
                value = self.kind(float(raw)) if self.kind is int else self.kind(raw)
                if self.kind is int and float(raw) != value:
                    raise ValueError(raw)
            except (TypeError, ValueError, OverflowError):
                raise ParamError(f"parameter {name!r} must be a number, not {raw!r}") from None
            if value != value or (self.minimum is not None and value < self.minimum):
                raise ParamError(f"parameter {name!r} must be at least {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise ParamError(f"parameter {name!r} must be at most {self.maximum}")
            return value
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise ParamError(f"parameter {name!r} must be text")
        text = str(raw)
        if len(text) > self.max_length:
            raise ParamError(f"parameter {name!r} is longer than {self.max_length} characters")
        return text


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str
    params: dict[str, Param] = field(default_factory=dict)
    output_content_type: str | None = None  # None: same type as the input
    input_name: str = "file"  # the name the GPU pipeline reads its input under

    def parse_params(self, raw: dict[str, Any]) -> dict[str, Any]:
        # The upload form holds every pipeline's fields; a browser sends the empty ones too.
        raw = {name: value for name, value in raw.items() if value not in ("", None)}
        unknown = sorted(set(raw) - set(self.params))
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise ParamError(
                f"unknown parameter(s) {', '.join(unknown)} for pipeline {self.name!r}; "
                f"known: {known}"
            )
        return {
            name: self.params[name].parse(name, value)
            for name, value in raw.items()
            if value not in ("", None)
        }


CATALOGUE: dict[str, Pipeline] = {
    "echo": Pipeline(
        name="echo",
        description="Returns its parameters (for tests and demos).",
        params={
            "sleep_s": Param(float, "seconds to sleep on the GPU", 0, 3600),
            "fail": Param(str, "make the handler fail with this message"),
            "output_bytes": Param(int, "write a result file of this many bytes", 0, 2**31),
            "return_input": Param(str, "send this input back as the result (file)", max_length=64),
        },
    ),
    "video_enhance": Pipeline(
        name="video_enhance",
        description="2x upscale, sharpen and denoise a video.",
        input_name="video",
        output_content_type="video/mp4",
        params={
            "scale": Param(int, "upscale factor", choices=(1, 2)),
            "sharpen": Param(float, "edge-aware sharpening strength", 0, 3),
            "denoise": Param(float, "temporal denoise strength", 0, 1),
            "batch_size": Param(int, "frames per GPU batch", 1, 128),
            "crf": Param(int, "H.264 quality (lower is better)", 0, 51),
            "preset": Param(
                str,
                "x264 speed preset",
                choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"),
            ),
            "max_frames": Param(int, "stop after this many frames (0: all)", 0),
        },
    ),
    "sr_learned": Pipeline(
        name="sr_learned",
        description="ESPCN super-resolution of a video (weights from the Hugging Face Hub).",
        input_name="video",
        output_content_type="video/mp4",
        params={
            "batch_size": Param(int, "frames per GPU batch", 1, 128),
            "crf": Param(int, "H.264 quality (lower is better)", 0, 51),
            "max_frames": Param(int, "stop after this many frames (0: all)", 0),
        },
    ),
}


def input_name(name: str) -> str:
    return CATALOGUE[name].input_name if name in CATALOGUE else "file"


def get(name: str, enabled: tuple[str, ...]) -> Pipeline:
    """The pipeline called ``name`` if it is enabled (``PIPELINES``); ``ParamError`` if not.

    An enabled pipeline missing from the catalogue accepts text parameters as they are.
    """
    if not isinstance(name, str) or name not in enabled or not NAME_RE.match(name):
        raise ParamError(f"unknown pipeline {name!r}; choose one of: {', '.join(enabled)}")
    return CATALOGUE.get(name) or Pipeline(name=name, description=name)


def parse_free_params(pipeline: Pipeline, raw: dict[str, Any]) -> dict[str, Any]:
    if pipeline.params or pipeline.name in CATALOGUE:
        return pipeline.parse_params(raw)
    text = Param(str, "")
    for key in raw:
        if not NAME_RE.match(str(key)):
            raise ParamError(f"invalid parameter name {key!r}")
    return {key: text.parse(key, value) for key, value in raw.items()}
