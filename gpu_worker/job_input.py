"""The job's input (``job["input"]``): its shape in one JSON Schema, parsed once into a
``JobInput``. Like a pipeline's parameters, the shape is data; what depends on the pipeline
(its inputs, its parameters) and on URLs (``transfer.check_url``) is checked after it.

Each subschema that can fail carries the words the person who sent the job reads:
``x-error`` (what was expected) and ``x-field`` (the field named); ``x-unknown`` words an
undeclared key, given its ``{name}``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from gpu_worker import pipelines
from gpu_worker.errors import InputError
from gpu_worker.transfer import check_url

FIELDS = ("pipeline", "params", "inputs", "output", "job_key", "callbacks")
CALLBACK_KINDS = ("claim", "progress")
_OUTPUT_WORDS = 'expected {"put_url": URL, "content_type": CT} or {"inline": true}'


def _worded(field: str, words: str, **rule: Any) -> dict[str, Any]:
    """A subschema with the words its refusal shows: ``<field>: <words>``."""
    return {**rule, "x-field": field, "x-error": words}


SCHEMA: dict[str, Any] = {
    "$schema": pipelines.SCHEMA_DIALECT,
    "type": "object",
    "x-field": "input",
    "x-error": "expected a JSON object with a 'pipeline' field",
    "additionalProperties": False,
    "x-unknown": "input.{name}: unknown field; the input takes " + ", ".join(FIELDS),
    "properties": {
        "pipeline": _worded("pipeline", "expected a pipeline name string", type="string"),
        "params": _worded(
            "params", "expected a JSON object of parameters", type=["object", "null"]
        ),
        "inputs": _worded(
            "inputs", 'expected a JSON object {"<name>": "<http(s) URL>"}', type=["object", "null"]
        ),
        "output": {
            "type": ["object", "null"],
            "x-field": "output",
            "x-error": _OUTPUT_WORDS,
            "if": {"type": "object", "required": ["put_url"]},
            "then": {
                "properties": {
                    "inline": _worded(
                        "output", "give either put_url or inline, not both", enum=[False, None]
                    ),
                    "content_type": _worded(
                        "output.content_type",
                        "expected a MIME type string like video/mp4",
                        type=["string", "null"],
                    ),
                }
            },
            "else": {
                "if": {"type": "object"},
                "then": {
                    "required": ["inline"],
                    "properties": {"inline": {"const": True}},
                    "x-field": "output",
                    "x-error": _OUTPUT_WORDS,
                },
            },
        },
        "job_key": _worded(
            "job_key", "expected a string (the app's job id)", type=["string", "null"]
        ),
        "callbacks": {
            "type": ["object", "null"],
            "x-field": "callbacks",
            "x-error": 'expected {"claim": URL, "progress": URL}',
            "propertyNames": {"enum": list(CALLBACK_KINDS)},
            "x-unknown": "callbacks.{name}: unknown; the input takes " + ", ".join(CALLBACK_KINDS),
        },
    },
}


@dataclass(frozen=True)
class JobInput:
    """A checked job input: the pipeline itself, its params with defaults filled in."""

    pipeline: pipelines.Pipeline
    params: dict[str, Any]
    inputs: dict[str, str]
    output: dict[str, Any]
    job_key: str | None
    callbacks: dict[str, str]


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(SCHEMA)


def parse(payload: Any) -> JobInput:
    """Check ``payload`` against ``SCHEMA``, then against its pipeline; ``InputError`` names
    the first bad field."""
    errors = list(_validator().iter_errors(payload))
    if errors:
        raise InputError(min((_explain(e) for e in errors), key=_order))
    name = payload.get("pipeline", "echo")
    try:
        pipeline = pipelines.get(name)
    except KeyError as exc:
        raise InputError(f"pipeline: {exc.args[0]}") from None
    params = pipeline.validate_params(payload.get("params") or {})
    inputs = payload.get("inputs") or {}
    declared = {i.name: i for i in pipeline.inputs}
    if not pipeline.extra_inputs:
        for key in inputs:
            if key not in declared:
                raise InputError(
                    f"inputs.{key}: pipeline {name} takes no such input; it takes "
                    f"{', '.join(declared) or 'none'}"
                )
    for key, spec in declared.items():
        if spec.required and key not in inputs:
            raise InputError(f"inputs.{key}: missing; pipeline {name} needs it as an http(s) URL")
    for key, url in inputs.items():
        check_url(f"inputs.{key}", url)
    output = payload.get("output") or {"inline": True}
    if "put_url" in output:
        check_url("output.put_url", output["put_url"])
    callbacks = payload.get("callbacks") or {}
    for kind, url in callbacks.items():
        check_url(f"callbacks.{kind}", url)
    return JobInput(
        pipeline=pipeline,
        params=params,
        inputs=inputs,
        output=output,
        job_key=payload.get("job_key"),
        callbacks=callbacks,
    )


def _explain(error: Any) -> str:
    """The words for one schema error, from the nearest subschema that has them."""
    path = list(error.absolute_schema_path)
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return error.schema["x-unknown"].format(name=unknown[0])
    if "propertyNames" in path:
        return _at(path[: path.index("propertyNames")])["x-unknown"].format(name=error.instance)
    worded: dict[str, Any] = SCHEMA
    node: Any = SCHEMA
    for step in path:
        node = node[step]
        if isinstance(node, dict) and "x-error" in node:
            worded = node
    return f"{worded['x-field']}: {worded['x-error']}"


def _at(path: list[Any]) -> dict[str, Any]:
    node: Any = SCHEMA
    for step in path:
        node = node[step]
    return node


def _order(message: str) -> tuple[int, str]:
    """Unknown fields first, then the fields in ``FIELDS`` order."""
    head = message.split(":", 1)[0].split(".", 1)
    if head[0] == "input":
        return -1, message
    return FIELDS.index(head[0]) if head[0] in FIELDS else len(FIELDS), message
