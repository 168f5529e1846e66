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


def _job_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Job"},
                "examples": {"queued": {"value": JOB_EXAMPLE}},
            }
        },
    }
    if headers:
        response["headers"] = headers
    return response


JOB_EXAMPLE = {
    "id": "0b7c6a52-5d55-4f0e-9a55-0c1f5b0f8a11",
    "status": "PENDING",
    "pipeline": "echo",
    "params": {"sleep_s": 1},
    "token_name": "ci-nightly",
    "terminal": False,
}
EVENT_EXAMPLE = {
    "type": "job.completed",
    "timestamp": "2026-12-05T10:03:27.123456+00:00",
    "data": {k: v for k, v in JOB_EXAMPLE.items() if k != "terminal"} | {"status": "COMPLETED"},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "send the same key again (within 24 h, same token) to get the first "
    "answer instead of a second job",
    "schema": {"type": "string", "maxLength": 255},
    "example": "upload-2026-12-05-0001",
}
PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "wait=N (1-60): answer when the job ends or after N seconds",
    "schema": {"type": "string", "pattern": "^wait=[0-9]+$"},
    "example": "wait=30",
}
JOB_HEADERS = {
    "Preference-Applied": {
        "description": "wait=N when a Prefer: wait was honoured",
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": "true when this is the first request's answer again",
        "schema": {"type": "string"},
    },
}
QUOTA = {
    "description": "over one of the token's quotas; Retry-After says when to try again",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QuotaError"}}},
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


# The pieces of the document, in the order it lists them: paths (jobs, meta, webhooks), the
# 3.1 ``webhooks`` section, then the component schemas.

INFO = {
    "title": "gpu-jobs API",
    "version": "1",
    "description": "Upload a file, run a GPU pipeline on it, fetch the result.",
}
TAGS = [
    {"name": "jobs", "description": "Submit jobs and follow them"},
    {"name": "webhooks", "description": "Deliveries of a job's events to its webhook"},
    {"name": "meta", "description": "About the API itself"},
]
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
UNAUTHORISED = _error_response("missing or invalid bearer token")
MISSING = _error_response("no such job for this token")


def _list_of(description: str, key: str, schema: str) -> dict[str, Any]:
    """A 200 answer holding one array of ``schema`` objects under ``key``."""
    items = {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}}
    return {
        "description": description,
        "content": {"application/json": {"schema": {"type": "object", "properties": {key: items}}}},
    }


def _upload_form(settings: Settings) -> dict[str, Any]:
    """The multipart body of ``create_job``: the file, its pipeline, parameters and webhook."""
    return {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "webhook": {
                "type": "string",
                "format": "uri",
                "description": "where to POST this job's events "
                "(https; signed, see webhooks); needs a named token",
                "examples": ["https://example.com/hooks/gpu-jobs"],
            },
            "webhook_events_filter": {
                "type": "string",
                "description": "comma list of start, progress, completed (default completed)",
                "examples": ["start,completed"],
            },
            "pipeline": {"type": "string", "enum": list(settings.pipelines)},
            "params": {
                "type": "string",
                "description": "JSON object of the chosen "
                "pipeline's parameters (or send each as a field "
                "named param.<name>); each pipeline's schema is "
                "components.schemas.<pipeline>_params",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "anyOf": [
                        {"$ref": f"#/components/schemas/{n}_params"} for n in settings.pipelines
                    ]
                },
            },
        },
    }


def _create_job(settings: Settings) -> dict[str, Any]:
    return {
        "operationId": "create_job",
        "tags": ["jobs"],
        "summary": "Upload a file and start a job",
        "parameters": [IDEMPOTENCY_KEY, PREFER],
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": _upload_form(settings)}},
        },
        "responses": {
            "201": _job_response(
                "the job was created and queued (with Prefer: wait, as it is "
                "when it ended or the wait ran out)",
                JOB_HEADERS,
            ),
            "400": _error_response("missing file, bad parameters or webhook"),
            "401": UNAUTHORISED,
            "409": _error_response("a request with this Idempotency-Key is in flight"),
            "422": _error_response("this Idempotency-Key was used with another file or parameters"),
            "429": QUOTA,
            "413": _error_response(f"larger than MAX_UPLOAD_BYTES ({settings.max_upload_bytes})"),
            "415": _error_response("file type not accepted"),
        },
    }


LIST_JOBS = {
    "operationId": "list_jobs",
    "tags": ["jobs"],
    "summary": "List this token's jobs, newest first",
    "parameters": [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 500}},
        {"name": "status", "in": "query", "schema": {"type": "string", "enum": STATUSES}},
        {"name": "pipeline", "in": "query", "schema": {"type": "string"}},
    ],
    "responses": {"200": _list_of("jobs", "jobs", "Job"), "401": UNAUTHORISED},
}
META_PATHS = {
    "/api/openapi.json": {
        "get": {
            "operationId": "get_openapi_document",
            "tags": ["meta"],
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "the OpenAPI 3.1 document"}},
        }
    },
}
JOB_PATHS = {
    "/api/jobs/{job_id}": {
        "get": {
            "operationId": "get_job",
            "tags": ["jobs"],
            "summary": "A job's status, timings, cost and result URL",
            "parameters": [JOB_ID, PREFER],
            "responses": {
                "200": _job_response("the job", JOB_HEADERS),
                "401": UNAUTHORISED,
                "404": MISSING,
            },
        }
    },
    "/api/jobs/{job_id}/cancel": {
        "post": {
            "operationId": "cancel_job",
            "tags": ["jobs"],
            "summary": "Cancel a job that has not finished",
            "parameters": [JOB_ID],
            "responses": {
                "202": _job_response("cancelling"),
                "401": UNAUTHORISED,
                "404": MISSING,
                "409": _error_response("the job already finished"),
            },
        }
    },
    "/api/jobs/{job_id}/retry": {
        "post": {
            "operationId": "retry_job",
            "tags": ["jobs"],
            "summary": "Run a failed, cancelled or timed-out job again",
            "parameters": [JOB_ID],
            "responses": {
                "202": _job_response("queued again"),
                "401": UNAUTHORISED,
                "404": MISSING,
                "409": _error_response("the job cannot be retried now"),
            },
        }
    },
}
WEBHOOK_PATHS = {
    "/api/jobs/{job_id}/webhooks": {
        "get": {
            "operationId": "list_job_webhooks",
            "tags": ["webhooks"],
            "summary": "This job's webhook deliveries and every attempt at each",
            "parameters": [JOB_ID],
            "responses": {
                "200": _list_of("deliveries, oldest first", "deliveries", "Delivery"),
                "401": UNAUTHORISED,
                "404": MISSING,
            },
        }
    },
    "/api/jobs/{job_id}/webhooks/{delivery_id}/redeliver": {
        "post": {
            "operationId": "redeliver_job_webhook",
            "tags": ["webhooks"],
            "summary": "Send a delivery again, with the same webhook-id",
            "parameters": [
                JOB_ID,
                {
                    "name": "delivery_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "202": {
                    "description": "queued again",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Delivery"}}
                    },
                },
                "401": UNAUTHORISED,
                "404": _error_response("no such job or delivery for this token"),
            },
        }
    },
}
# OpenAPI 3.1's top-level ``webhooks``: what this app POSTs to a job's webhook URL.
WEBHOOKS = {
    "jobEvent": {
        "post": {
            "operationId": "job_event",
            "tags": ["webhooks"],
            "summary": "A job started, made progress or ended (the events asked for)",
            "description": "Signed the Standard Webhooks way with the token's webhook "
            "secret: verify webhook-signature (v1,<base64 HMAC-SHA256 of "
            "'<webhook-id>.<webhook-timestamp>.<body>'>) before trusting it, e.g. "
            "standardwebhooks.Webhook(secret).verify(body, headers). Retries keep "
            "the webhook-id; answer 2xx quickly. 5xx, 429 and network errors are "
            "retried for 24 h; other 4xx are not.",
            "parameters": [
                {"name": n, "in": "header", "required": True, "schema": {"type": "string"}}
                for n in ("webhook-id", "webhook-timestamp", "webhook-signature")
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/JobEvent"},
                        "examples": {"completed": {"value": EVENT_EXAMPLE}},
                    }
                },
            },
            "responses": {"200": {"description": "received (any 2xx)"}},
        }
    }
}

# The component schemas the paths and webhooks refer to.
JOB_EVENT_SCHEMA = {
    "type": "object",
    "required": ["type", "timestamp", "data"],
    "properties": {
        "type": {
            "type": "string",
            "enum": ["job.start", "job.progress", "job.completed"],
        },
        "timestamp": {"type": "string", "format": "date-time"},
        "data": {
            "type": "object",
            "description": "the job at the event; GET data.urls.get for its result link",
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "enum": STATUSES},
                "pipeline": {"type": "string"},
                "params": {"type": "object"},
                "progress": {"type": ["object", "null"]},
                "result": {"type": ["object", "null"]},
                "error": {"type": ["string", "null"]},
                "token_name": {"type": ["string", "null"]},
                "created_at": {"type": "string", "format": "date-time"},
                "started_at": {"type": ["string", "null"], "format": "date-time"},
                "finished_at": {"type": ["string", "null"], "format": "date-time"},
                "urls": {"type": "object"},
            },
        },
    },
}
DELIVERY_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "the webhook-id header"},
        "event": {"type": "string", "enum": ["start", "progress", "completed"]},
        "url": {"type": "string"},
        "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        "created_at": {"type": "string", "format": "date-time"},
        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
        "attempts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "at": {"type": "string", "format": "date-time"},
                    "status_code": {"type": ["integer", "null"]},
                    "error": {"type": ["string", "null"]},
                    "duration_ms": {"type": ["integer", "null"]},
                },
            },
        },
    },
}
QUOTA_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "limit": {
            "type": "string",
            "enum": ["max_concurrent", "max_jobs_per_day", "max_spend_per_day"],
        },
        "resets_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}}
JOB_SCHEMA = {
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
        "token_name": {
            "type": ["string", "null"],
            "description": "the named token that made it",
        },
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
        "cost": {
            "type": ["object", "null"],
            "description": "The job's GPU bill as its worker was billed "
            "(start-up when it woke the worker, its run); so_far while it "
            "may grow; null until the endpoint's record is read",
            "properties": {
                "cost_usd": {"type": "number"},
                "so_far": {"type": "boolean"},
                "seconds": {
                    "type": "object",
                    "properties": {
                        k: {"type": "number"} for k in ("start", "model_load", "run", "upload")
                    },
                },
            },
        },
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "urls": {
            "type": "object",
            "description": "get, page, result, cancel and retry (null when not available now)",
            "additionalProperties": {"type": ["string", "null"]},
        },
        "terminal": {"type": "boolean"},
    },
}


def document(settings: Settings) -> dict[str, Any]:
    """The whole document; only the pipelines, the base URL and the upload limit vary."""
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "servers": [{"url": settings.public_base_url}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/jobs": {"post": _create_job(settings), "get": LIST_JOBS},
            **META_PATHS,
            **JOB_PATHS,
            **WEBHOOK_PATHS,
        },
        "tags": TAGS,
        "webhooks": WEBHOOKS,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **pipeline_schemas(settings),
                "JobEvent": JOB_EVENT_SCHEMA,
                "Delivery": DELIVERY_SCHEMA,
                "QuotaError": QUOTA_ERROR_SCHEMA,
                "Error": ERROR_SCHEMA,
                "Job": JOB_SCHEMA,
            },
        },
    }
