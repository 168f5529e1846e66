"""The OpenAPI 3.1 document for the JSON API (served at ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from app import pipelines
from app.models import Status
from app.settings import Settings

STATUSES = [s.value for s in Status]


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _job_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}},
    }


def pipeline_schemas(settings: Settings) -> dict[str, Any]:
    """Each enabled pipeline's parameters, from its declaration (``app/pipelines.json``)."""
    schemas = {}
    for name in settings.pipelines:
        pipeline = pipelines.get(name, settings.pipelines, settings)
        schema = pipeline.schema()
        schema["title"] = f"{name} parameters"
        schema["description"] = (
            f"{pipeline.description} Takes {' or '.join(pipeline.kinds)}; "
            f"input field 'file'. {pipeline.help}".strip()
        )
        schemas[f"{name}_params"] = schema
    return schemas


def document(settings: Settings) -> dict[str, Any]:
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    unauthorised = _error_response("missing or invalid bearer token")
    missing = _error_response("no such job for this token")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gpu-jobs API",
            "version": "1",
            "description": "Upload a file, run a GPU pipeline on it, fetch the result.",
        },
        "servers": [{"url": settings.public_base_url}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/jobs": {
                "post": {
                    "summary": "Upload a file and start a job",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {
                                        "file": {"type": "string", "format": "binary"},
                                        "pipeline": {
                                            "type": "string",
                                            "enum": list(settings.pipelines),
                                        },
                                        "params": {
                                            "type": "string",
                                            "description": "JSON object of the chosen "
                                            "pipeline's parameters (or send each as a field "
                                            "named param.<name>); each pipeline's schema is "
                                            "components.schemas.<pipeline>_params",
                                            "contentMediaType": "application/json",
                                            "contentSchema": {
                                                "anyOf": [
                                                    {"$ref": f"#/components/schemas/{n}_params"}
                                                    for n in settings.pipelines
                                                ]
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _job_response("the job was created and queued"),
                        "400": _error_response("missing file or bad parameters"),
                        "401": unauthorised,
                        "413": _error_response(
                            f"larger than MAX_UPLOAD_BYTES ({settings.max_upload_bytes})"
                        ),
                        "415": _error_response("file type not accepted"),
                    },
                },
                "get": {
                    "summary": "List this token's jobs, newest first",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "maximum": 500},
                        },
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": STATUSES},
                        },
                        {"name": "pipeline", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "jobs",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "jobs": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Job"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        "401": unauthorised,
                    },
                },
            },
            "/api/jobs/{job_id}": {
                "get": {
                    "summary": "A job's status, timings, cost and result URL",
                    "parameters": [job_id],
                    "responses": {
                        "200": _job_response("the job"),
                        "401": unauthorised,
                        "404": missing,
                    },
                }
            },
            "/api/jobs/{job_id}/cancel": {
                "post": {
                    "summary": "Cancel a job that has not finished",
                    "parameters": [job_id],
                    "responses": {
                        "202": _job_response("cancelling"),
                        "401": unauthorised,
                        "404": missing,
                        "409": _error_response("the job already finished"),
                    },
                }
            },
            "/api/jobs/{job_id}/retry": {
                "post": {
                    "summary": "Run a failed, cancelled or timed-out job again",
                    "parameters": [job_id],
                    "responses": {
                        "202": _job_response("queued again"),
                        "401": unauthorised,
                        "404": missing,
                        "409": _error_response("the job cannot be retried now"),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **pipeline_schemas(settings),
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string", "enum": STATUSES},
                        "phase": {"type": "string"},
                        "message": {"type": "string", "description": "the status in words"},
                        "detail": {"type": ["string", "null"], "description": "why; what to do"},
                        "pipeline": {"type": "string"},
                        "endpoint": {
                            "type": "string",
                            "description": "the GPU endpoint (by name) serving the pipeline",
                        },
                        "params": {"type": "object"},
                        "input": {"type": "object"},
                        "progress": {"type": ["object", "null"]},
                        "result": {"type": ["object", "null"]},
                        "result_url": {"type": ["string", "null"], "description": "expiring link"},
                        "result_type": {"type": ["string", "null"]},
                        "error": {"type": ["string", "null"]},
                        "diagnosis": {"type": ["string", "null"]},
                        "timings": {
                            "type": "object",
                            "properties": {
                                "queue_delay_s": {"type": ["number", "null"]},
                                "execution_s": {"type": ["number", "null"]},
                                "cold_start_s": {"type": ["number", "null"]},
                                "cost_usd": {"type": ["number", "null"]},
                            },
                        },
                        "created_at": {"type": "string", "format": "date-time"},
                        "started_at": {"type": ["string", "null"], "format": "date-time"},
                        "finished_at": {"type": ["string", "null"], "format": "date-time"},
                        "urls": {
                            "type": "object",
                            "description": "get, page, result, cancel and retry (null when "
                            "not available now)",
                            "additionalProperties": {"type": ["string", "null"]},
                        },
                        "terminal": {"type": "boolean"},
                    },
                },
            },
        },
    }
