"""The pipelines this app offers, read from their one declaration.

Each GPU pipeline declares its parameters (JSON Schema), inputs and output in its module in
``gpu_worker/pipelines``. The app runs on other machines and does not import that package
(the web image does not ship it, and a model module may import anything): it reads
``app/pipelines.json``, which ``python -m gpu_worker.pipelines catalogue`` generates from
those declarations (``make catalogue``; ``tests/test_pipeline_catalogue.py`` fails when the
file is stale). The same schema validates the upload here and the job on the worker, builds
the form and is published in the OpenAPI document.

Two rules are the app's own: it forwards only declared parameters (a pipeline may accept
others from other clients), and a parameter marked ``"x-max-setting": "<setting>"`` is held
under that setting's value (echo's ``sleep_s`` under ``EXECUTION_TIMEOUT_S``).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CATALOGUE_FILE = Path(__file__).with_name("pipelines.json")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# What the browser's file picker offers for each input kind.
ACCEPT = {"video": "video/*", "image": "image/png,image/jpeg,image/webp"}
KIND_WORDS = {"video": "a video", "image": "an image"}
TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
}
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


class ParamError(ValueError):
    """A parameter is unknown, of the wrong type or out of range; the message says which.
    ``problems`` lists each problem when there are several (``str()`` joins them)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


@dataclass(frozen=True)
class Field:
    """One parameter as the upload form shows it."""

    name: str
    title: str
    help: str
    type: str  # integer | number | boolean | string
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    max_length: int | None = None

    @property
    def widget(self) -> str:
        if self.choices:
            return "select"
        return {"integer": "number", "number": "number", "boolean": "checkbox"}.get(
            self.type, "text"
        )

    @property
    def step(self) -> str:
        return "1" if self.type == "integer" else "any"


@dataclass(frozen=True)
class Pipeline:
    name: str
    title: str
    description: str
    help: str
    params: dict[str, Any]  # the JSON Schema of the params object, as declared
    inputs: tuple[dict[str, Any], ...] = ()
    output: dict[str, str] = field(default_factory=dict)
    limits: tuple[tuple[str, float], ...] = ()  # setting name -> value, for x-max-setting

    @property
    def input_name(self) -> str:
        """The name the worker reads the uploaded file under."""
        return self.inputs[0]["name"] if self.inputs else "file"

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of file the pipeline takes: video, image or any."""
        return tuple(self.inputs[0]["kinds"]) if self.inputs else ("any",)

    @property
    def accept(self) -> str:
        """The upload field's ``accept`` attribute ("" when any file goes)."""
        if "any" in self.kinds:
            return ""
        return ",".join(ACCEPT[kind] for kind in self.kinds)

    def takes(self, kind: str) -> bool:
        return "any" in self.kinds or kind in self.kinds

    def refusal(self, kind: str) -> str:
        """Why a file of this kind is refused, and what to do instead."""
        this = KIND_WORDS.get(kind, "neither a video nor an image")
        wanted = " or ".join(KIND_WORDS.get(k, k) for k in self.kinds)
        return (
            f"{self.name} takes {' or '.join(self.kinds)}; this is {this}. "
            f"Upload {wanted}, or choose another pipeline."
        )

    def unreadable(self, claimed: str) -> str:
        """The refusal for a file PyAV cannot read as any kind this pipeline takes."""
        kind = claimed if claimed in self.kinds else self.kinds[0]
        return (
            f"this file is not a readable {kind}: {self.name} takes "
            f"{' or '.join(self.kinds)}. Check that the file plays on your computer, or "
            "export it again (H.264 MP4 for video; PNG, JPEG or WebP for images)."
        )

    def output_type(self, kind: str, content_type: str) -> str:
        """The result's content type for an input of this kind and type."""
        declared = self.output.get(kind) or self.output.get("any") or "same"
        return content_type if declared == "same" else declared

    def schema(self) -> dict[str, Any]:
        """The params schema with the app's settings applied (``x-max-setting``)."""
        limits = dict(self.limits)
        properties = {}
        for name, spec in self.params.get("properties", {}).items():
            spec = dict(spec)
            bound = limits.get(spec.get("x-max-setting", ""))
            if bound is not None:
                spec["maximum"] = min(spec.get("maximum", bound), bound)
            properties[name] = spec
        schema = {k: v for k, v in self.params.items() if k != "$schema"}
        return {**schema, "properties": properties, "additionalProperties": False}

    def fields(self) -> list[Field]:
        return [
            Field(
                name=name,
                title=spec.get("title", name),
                help=spec.get("description", ""),
                type=_type_of(spec),
                default=spec.get("default"),
                minimum=spec.get("minimum"),
                maximum=spec.get("maximum"),
                choices=tuple(spec.get("enum", ())),
                max_length=spec.get("maxLength"),
            )
            for name, spec in self.schema()["properties"].items()
        ]

    def parse_params(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The given parameters, typed and checked; ``ParamError`` says what to fix.

        Form fields arrive as text and are typed by their schema first; empty ones mean
        "use the default" and are left out (the worker fills in defaults)."""
        schema = self.schema()
        properties = schema["properties"]
        raw = {name: value for name, value in raw.items() if value not in ("", None)}
        unknown = sorted(set(raw) - set(properties))
        if unknown:
            raise ParamError(
                f"unknown parameter(s) {', '.join(map(str, unknown))} for pipeline "
                f"{self.name!r}; known: {', '.join(properties) or 'none'}"
            )
        # Every problem at once, so a person fixes them in one go rather than one a post.
        problems: list[str] = []
        typed = {}
        for name, value in raw.items():
            try:
                typed[name] = _typed(name, properties[name], value)
            except ParamError as exc:
                problems.append(str(exc))
        errors = sorted(_validator(json.dumps(schema)).iter_errors(typed), key=_error_order)
        for error in errors:
            name = str(error.path[0]) if error.path else "params"
            problems.append(_explain(name, properties.get(name, {}), error))
        if problems:
            raise ParamError("; ".join(problems), problems)
        return typed


def _error_order(error: Any) -> list[str]:
    return [str(part) for part in error.path]


@functools.cache
def _validator(schema_json: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


def _type_of(spec: dict[str, Any]) -> str:
    kind = spec.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return kind


def _typed(name: str, spec: dict[str, Any], raw: Any) -> Any:
    """A form's text (or a JSON value) as the parameter's declared type."""
    kind = _type_of(spec)
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in TRUE_WORDS:
            return True
        if str(raw).lower() in FALSE_WORDS:
            return False
        raise ParamError(f"parameter {name!r} must be true or false")
    if kind in ("integer", "number"):
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ParamError(f"parameter {name!r} must be a number")
        try:
            value = float(raw)
        except (TypeError, ValueError, OverflowError):
            raise ParamError(f"parameter {name!r} must be a number, not {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ParamError(f"parameter {name!r} must be a finite number, not {raw!r}")
        if kind == "integer":
            if value != int(value):
                raise ParamError(f"parameter {name!r} must be a whole number, not {raw!r}")
            return int(value)
        return value
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise ParamError(f"parameter {name!r} must be text")
    return str(raw)


def _explain(name: str, spec: dict[str, Any], error: Any) -> str:
    """One sentence for the first schema violation: what the parameter must be."""
    if error.validator == "enum":
        options = ", ".join(str(c) for c in spec.get("enum", ()))
        return f"parameter {name!r} must be one of {options}"
    if error.validator in ("minimum", "exclusiveMinimum"):
        return f"parameter {name!r} must be at least {spec[error.validator]:g}"
    if error.validator in ("maximum", "exclusiveMaximum"):
        return f"parameter {name!r} must be at most {spec[error.validator]:g}"
    if error.validator == "maxLength":
        return f"parameter {name!r} is longer than {spec['maxLength']} characters"
    if error.validator == "type":
        return f"parameter {name!r} must be {TYPE_WORDS.get(_type_of(spec), _type_of(spec))}"
    return f"parameter {name!r}: {error.message}"


@functools.cache
def declared() -> dict[str, dict[str, Any]]:
    """Every declared pipeline, as ``app/pipelines.json`` holds it."""
    return json.loads(CATALOGUE_FILE.read_text())["pipelines"]


def _build(name: str, limits: tuple[tuple[str, float], ...]) -> Pipeline:
    spec = declared()[name]
    return Pipeline(
        name=name,
        title=spec.get("title") or name,
        description=spec.get("description", ""),
        help=spec.get("help", ""),
        params=spec["params"],
        inputs=tuple(spec.get("inputs", ())),
        output=dict(spec.get("output", {})),
        limits=limits,
    )


def input_name(name: str) -> str:
    return _build(name, ()).input_name if name in declared() else "file"


def get(name: str, enabled: tuple[str, ...], settings: Any = None) -> Pipeline:
    """The pipeline called ``name`` if it is enabled (``PIPELINES``); ``ParamError`` if not.

    With ``settings``, parameters marked ``x-max-setting`` are bounded by that setting."""
    if not isinstance(name, str) or name not in enabled or not NAME_RE.match(name):
        raise ParamError(f"unknown pipeline {name!r}; choose one of: {', '.join(enabled)}")
    if name not in declared():
        raise ParamError(
            f"pipeline {name!r} is enabled in PIPELINES but not declared in {CATALOGUE_FILE.name}; "
            "run `make catalogue` after adding it to gpu_worker/pipelines"
        )
    limits: tuple[tuple[str, float], ...] = ()
    if settings is not None:
        limits = tuple(
            (spec["x-max-setting"], getattr(settings, spec["x-max-setting"]))
            for spec in declared()[name]["params"].get("properties", {}).values()
            if hasattr(settings, spec.get("x-max-setting", "") or "-")
        )
    return _build(name, limits)


def undeclared(enabled: tuple[str, ...]) -> list[str]:
    """The enabled pipelines no declaration covers (a settings error)."""
    return [name for name in enabled if name not in declared()]
