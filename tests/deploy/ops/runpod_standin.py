"""A stand-in for RunPod's management API, built from the published REST v2 spec.

It serves the REST v2 paths ``python -m deploy`` uses (serverless endpoints, workers,
worker logs, releases, templates, network volumes, GPU catalog) and the one GraphQL query
(balance and spend). Every request body and query, and every response it sends, is
validated against ``runpod-rest-v2-openapi.json`` (a copy of the published spec): unknown
fields, missing required ones and wrong types are recorded in ``violations`` and the
request is answered 400, so a test fails if the client or the stand-in drifts from the spec.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.http_server import HTTPStandIn, QuietHandler

SPEC_PATH = Path(__file__).with_name("runpod-rest-v2-openapi.json")
SPEC = json.loads(SPEC_PATH.read_text())
_URI = "urn:runpod-rest-v2"
_REGISTRY = Registry().with_resource(_URI, Resource.from_contents(SPEC, DRAFT202012))
GRAPHQL_FIELDS = {"clientBalance", "currentSpendPerHr", "spendLimit"}
REST_COLLECTIONS = {p.split("/")[2] for p in SPEC["paths"]}
CONTAINER_KEYS = ("image", "args", "disk", "ports", "env", "registry")

CATALOG = [
    ("NVIDIA RTX A6000", "RTX A6000", "AMPERE_48", 48, 1.22, "HIGH"),
    ("NVIDIA A40", "A40", "AMPERE_48", 48, 1.22, "LOW"),
    ("NVIDIA L40S", "L40S", "ADA_48_PRO", 48, 1.91, "MEDIUM"),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe", "AMPERE_80", 80, 2.72, "NONE"),
    ("NVIDIA H100 80GB HBM3", "H100 SXM", "ADA_80_PRO", 80, 4.18, "LOW"),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", "ADA_24", 24, 1.10, "HIGH"),
]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = SPEC
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _declared(schema: dict[str, Any]) -> tuple[dict[str, list[dict]], bool]:
    """Property name -> declaring subschemas, and whether any key is allowed (a map)."""
    schema = _resolve(schema)
    props: dict[str, list[dict]] = {}
    open_map = isinstance(schema.get("additionalProperties"), dict)
    for key, sub in (schema.get("properties") or {}).items():
        props.setdefault(key, []).append(sub)
    for branch_key in ("allOf", "oneOf", "anyOf"):
        for sub in schema.get(branch_key) or []:
            sub_props, sub_open = _declared(sub)
            open_map |= sub_open
            for key, subs in sub_props.items():
                props.setdefault(key, []).extend(subs)
    for branch_key in ("then", "else"):
        if branch_key in schema:
            sub_props, _ = _declared(schema[branch_key])
            for key, subs in sub_props.items():
                props.setdefault(key, []).extend(subs)
    return props, open_map


def unknown_fields(instance: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Keys the schema never declares, at any depth (the spec's bodies are closed objects)."""
    schema = _resolve(schema)
    problems: list[str] = []
    if isinstance(instance, dict):
        props, open_map = _declared(schema)
        if open_map or not props:
            return problems
        for key, value in instance.items():
            if key not in props:
                problems.append(f"{path}: unknown field {key!r}")
                continue
            # Declarations of one key compose (allOf) or alternate (oneOf, if/then): the
            # union of what they declare is allowed; the validator enforces the rest.
            problems += unknown_fields(value, {"anyOf": props[key]}, f"{path}.{key}")
    elif isinstance(instance, list):
        items = [_resolve(s).get("items") for s in [schema, *schema.get("anyOf", [])]]
        items = [i for i in items if isinstance(i, dict)]
        if items:
            for i, value in enumerate(instance):
                problems += unknown_fields(value, {"anyOf": items}, f"{path}[{i}]")
    return sorted(set(problems))


def validate(instance: Any, schema: dict[str, Any], what: str) -> list[str]:
    # Inline schemas (query parameters) refer to the spec's components: anchor them there.
    wrapper = json.loads(json.dumps(schema).replace('"#/components/', f'"{_URI}#/components/'))
    validator = Draft202012Validator(wrapper, registry=_REGISTRY)
    errors = [
        f"{what}: {'/'.join(str(p) for p in e.absolute_path) or '$'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]
    return errors + [f"{what}: {p}" for p in unknown_fields(instance, schema)]


def _route(method: str, path: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    for template, item in SPEC["paths"].items():
        pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
        match = re.match(pattern, path)
        if match and method.lower() in item:
            operation = dict(item[method.lower()])
            operation["parameters"] = item.get("parameters", []) + operation.get("parameters", [])
            return template, operation, match.groupdict()
    return None


class Problem(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class RunPodStandIn(HTTPStandIn):
    """In-memory RunPod account. Use as a context manager; ``rest_url``/``graphql_url``."""

    def __init__(self, api_key: str = "rpa_TESTKEY_standin_0123456789abcdef") -> None:
        self.api_key = api_key
        self.lock = threading.Lock()
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.templates: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.releases: dict[str, list[dict[str, Any]]] = {}
        self.versions: dict[str, int] = {}
        self.workers: dict[str, list[dict[str, Any]]] = {}
        self.logs: dict[tuple[str, str], list[str]] = {}
        self.balance = {"clientBalance": 42.5, "currentSpendPerHr": 0.047, "spendLimit": 100}
        self.requests: list[tuple[str, str, Any]] = []
        self.violations: list[str] = []
        self.freeze_releases = False  # simulate a change that never produces a release
        self.ignore_template_on_patch = False  # simulate a release without the new image
        self.log_stream_open_s = 0.0  # keep worker-log streams open this long, like SSE
        # Job API (api.runpod.ai/v2/{id}/...), served here too so doctor sees one account.
        self.job_counts: dict[str, dict[str, int]] = {}
        self.disabled: set[str] = set()  # endpoints whose job API answers Not Found

    @property
    def rest_url(self) -> str:
        return f"{self.origin}/v2"

    @property
    def graphql_url(self) -> str:
        return f"{self.origin}/graphql"

    def env(self) -> dict[str, str]:
        return {
            "RUNPOD_API_KEY": self.api_key,
            "RUNPOD_REST_URL": self.rest_url,
            "RUNPOD_GRAPHQL_URL": self.graphql_url,
        }

    def writes(self) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] != "GET"]

    # Fixtures for doctor / logs scenarios
    def add_worker(self, endpoint_id: str, status: str, logs: list[str] | None = None) -> str:
        wid = secrets.token_hex(4)
        version = self.versions.get(endpoint_id, 1)
        placed = status not in ("THROTTLED", "INITIALIZING")
        self.workers.setdefault(endpoint_id, []).append(
            {
                "id": wid,
                "status": status,
                "isStale": False,
                "version": version,
                "gpuCount": 1,
                "image": self.endpoints[endpoint_id].get("image"),
                "uptimeSeconds": 60 if placed else None,
                "gpuTypeId": "NVIDIA L40S" if placed else None,
                "dataCenterId": "US-TX-3" if placed else None,
                "startedAt": _now() if placed else None,
            }
        )
        self.logs[(endpoint_id, wid)] = list(logs or [])
        return wid

    # Request handling
    def handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _dispatch(self, method: str) -> None:
                try:
                    body = self._body()
                except ValueError:
                    self._send(
                        400,
                        {"title": "Bad Request", "status": 400, "detail": "bad JSON"},
                        "application/problem+json",
                    )
                    return
                url = urlsplit(self.path)
                with standin.lock:
                    standin.requests.append((method, url.path, body))
                if self.headers.get("Authorization") != f"Bearer {standin.api_key}":
                    self._send(
                        401,
                        {"title": "Unauthorized", "status": 401, "detail": "invalid API key"},
                        "application/problem+json",
                    )
                    return
                if url.path == "/graphql" and method == "POST":
                    self._send(200, standin._graphql(body))
                    return
                if standin._job_api(self, method, url.path):
                    return
                standin._rest(self, method, url.path, parse_qs(url.query), body)

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PATCH(self) -> None:
                self._dispatch("PATCH")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

        return Handler

    def _job_api(self, handler, method: str, path: str) -> bool:
        """RunPod's job API for endpoints of this account; False for REST v2 paths."""
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "v2" or parts[1] in REST_COLLECTIONS:
            return False
        eid, route = parts[1], parts[2]
        if eid in self.disabled or eid not in self.endpoints:
            handler._send(404, {"message": "Not Found"})
            return True
        counts = self.job_counts.setdefault(
            eid, {"completed": 0, "failed": 0, "inProgress": 0, "inQueue": 0, "retried": 0}
        )
        if route == "health" and method == "GET":
            summary = self._op_listEndpointWorkers({"id": eid}, {}, None)[1]["summary"]
            workers = {k: summary[k] for k in ("idle", "initializing", "running", "throttled")}
            handler._send(200, {"jobs": dict(counts), "workers": {**workers, "ready": 0}})
        elif route == "purge-queue" and method == "POST":
            removed, counts["inQueue"] = counts["inQueue"], 0
            handler._send(200, {"removed": removed, "status": "completed"})
        elif route == "cancel" and method == "POST" and len(parts) == 4:
            handler._send(200, {"id": parts[3], "status": "CANCELLED"})
        else:
            handler._send(404, {"error": "request does not exist"})
        return True

    def _graphql(self, body: Any) -> dict[str, Any]:
        query = (body or {}).get("query", "")
        match = re.search(r"myself\s*\{([^{}]*)\}", query)
        if not match:
            self.violations.append(f"GraphQL: only the balance query is served, got {query!r}")
            return {"errors": [{"message": "unsupported query"}]}
        fields = set(match.group(1).split())
        unknown = fields - GRAPHQL_FIELDS
        if unknown:
            self.violations.append(f"GraphQL: unknown fields on User: {sorted(unknown)}")
            return {"errors": [{"message": f"Cannot query field {sorted(unknown)[0]} on User"}]}
        return {"data": {"myself": {k: self.balance[k] for k in fields}}}

    def _rest(self, handler, method: str, path: str, query: dict, body: Any) -> None:
        found = _route(method, path)
        if found is None:
            self.violations.append(f"{method} {path}: not a REST v2 path")
            handler._send(
                404,
                {"title": "Not Found", "status": 404, "detail": "no such route"},
                "application/problem+json",
            )
            return
        template, operation, params = found
        what = f"{method} {template}"
        problems = self._check_query(operation, query, what)
        request_schema = (
            operation.get("requestBody", {})
            .get("content", {})
            .get("application/json", {})
            .get("schema")
        )
        if request_schema is not None:
            if body is None:
                problems.append(f"{what}: request body required")
            else:
                problems += validate(body, request_schema, f"{what} request")
        elif body is not None:
            problems.append(f"{what}: this operation takes no body")
        if problems:
            self.violations.extend(problems)
            handler._send(
                400,
                {
                    "title": "Bad Request",
                    "status": 400,
                    "detail": "request does not match the schema",
                    "errors": problems,
                },
                "application/problem+json",
            )
            return
        try:
            with self.lock:
                status, payload = self._operate(operation["operationId"], params, query, body)
        except Problem as problem:
            status = problem.status
            payload = {"title": "Error", "status": status, "detail": problem.detail}
        if operation["operationId"] == "getWorkerLogs" and status == 200:
            events = (
                (i, json.dumps({"ts": _now(), "source": "container", "line": line}))
                for i, line in enumerate(payload)
            )
            data = "".join(f"id: {_now()}/{i:012d}\ndata: {event}\n\n" for i, event in events)
            data = data.encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Cache-Control", "no-cache")
            if self.log_stream_open_s:
                # Like the real stream: backfill, then stay open for live lines.
                handler.send_header("Connection", "close")
                handler.end_headers()
                handler.wfile.write(data)
                handler.wfile.flush()
                time.sleep(self.log_stream_open_s)
                handler.close_connection = True
                return
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        self._check_response(operation, status, payload, what)
        ctype = "application/json" if status < 400 else "application/problem+json"
        handler._send(status, payload, ctype)

    def _check_query(self, operation: dict, query: dict, what: str) -> list[str]:
        declared = {}
        for param in operation.get("parameters", []):
            param = _resolve(param)
            if param.get("in") == "query":
                declared[param["name"]] = param
        problems = []
        for name, values in query.items():
            if name not in declared:
                problems.append(f"{what}: unknown query parameter {name!r}")
                continue
            schema = declared[name]["schema"]
            value: Any = values[-1]
            resolved = _resolve(schema)
            if resolved.get("type") == "array":
                value = value.split(",")
            elif resolved.get("type") == "integer":
                try:
                    value = int(value)
                except ValueError:
                    problems.append(f"{what}: query {name} must be an integer")
                    continue
            problems += validate(value, schema, f"{what} query {name}")
        return problems

    def _check_response(self, operation: dict, status: int, payload: Any, what: str) -> None:
        responses = operation["responses"]
        spec = responses.get(str(status)) or responses.get("default")
        if spec is None:
            self.violations.append(f"{what}: status {status} is not documented")
            return
        spec = _resolve(spec)
        content = spec.get("content")
        if not content:
            if payload is not None:
                self.violations.append(f"{what}: {status} must have no body")
            return
        schema = next(iter(content.values()))["schema"]
        self.violations.extend(validate(payload, schema, f"{what} response {status}"))

    # Operations
    def _operate(self, op: str, params: dict, query: dict, body: Any) -> tuple[int, Any]:
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise Problem(501, f"{op} is not served by the stand-in")
        return handler(params, query, body)

    def _endpoint(self, eid: str) -> dict[str, Any]:
        if eid not in self.endpoints:
            raise Problem(404, "endpoint not found")
        return self.endpoints[eid]

    def _op_listEndpoints(self, params, query, body):
        return 200, {"endpoints": [copy.deepcopy(e) for e in self.endpoints.values()]}

    def _op_getEndpoint(self, params, query, body):
        return 200, copy.deepcopy(self._endpoint(params["id"]))

    def _container_from_template(self, template_id: str) -> dict[str, Any]:
        template = self.templates.get(template_id)
        if template is None:
            raise Problem(404, f"template {template_id} not found")
        if not template["serverless"]:
            raise Problem(422, "template is not a serverless template")
        return {k: copy.deepcopy(template[k]) for k in CONTAINER_KEYS}

    def _check_compute(self, body: dict[str, Any]) -> None:
        pools = {row[2] for row in CATALOG} | {"AMPERE_16", "AMPERE_24", "HOPPER_141"}
        for pool in (body.get("gpu") or {}).get("pools", []):
            if pool not in pools:
                raise Problem(400, f"unknown GPU pool {pool}")
        for vid in body.get("networkVolumes") or []:
            if vid not in self.volumes:
                raise Problem(400, f"network volume {vid} not found")
        workers = body.get("workers") or {}
        if workers.get("min", 0) > workers.get("max", workers.get("min", 0)):
            raise Problem(400, "workers.min exceeds workers.max")

    def _op_createEndpoint(self, params, query, body):
        if ("gpu" in body) == ("cpu" in body):
            raise Problem(400, "specify exactly one of gpu or cpu")
        self._check_compute(body)
        if any(e["name"] == body["name"] for e in self.endpoints.values()):
            raise Problem(400, "an endpoint with this name exists")
        container = {
            "image": None,
            "args": "",
            "disk": 20,
            "ports": [],
            "env": {},
            "registry": None,
        }
        if "templateId" in body and not self.ignore_template_on_patch:
            container = self._container_from_template(body["templateId"])
        for key in CONTAINER_KEYS:
            if key in body:
                container[key] = {**container["env"], **body["env"]} if key == "env" else body[key]
        eid = secrets.token_hex(4)
        host = f"https://api.runpod.ai/v2/{eid}"
        gpu = body["gpu"]
        endpoint = {
            "id": eid,
            "name": body["name"],
            "type": body["type"],
            "requestUrls": {
                "run": f"{host}/run",
                "runSync": f"{host}/runsync",
                "status": f"{host}/status/{{job_id}}",
                "stream": f"{host}/stream/{{job_id}}",
                "cancel": f"{host}/cancel/{{job_id}}",
                "retry": f"{host}/retry/{{job_id}}",
                "purgeQueue": f"{host}/purge-queue",
                "health": f"{host}/health",
            },
            **container,
            "gpu": {
                "pools": list(gpu["pools"]),
                "count": gpu.get("count", 1),
                "allowedCudaVersions": [],
                "minCudaVersion": None,
            },
            "workers": {"min": 0, "max": 3, "idleTimeout": 10, **body.get("workers", {})},
            "scaling": body["scaling"],
            "dataCenterIds": body.get("dataCenterIds", []),
            "networkVolumes": body.get("networkVolumes", []),
            "timeout": body.get("timeout", 300000),
            "flashboot": body.get("flashboot", "OFF"),
            "createdAt": _now(),
        }
        if body["scaling"]["type"] == "REQUEST_COUNT":
            endpoint["workers"].pop("idleTimeout", None)
        self.endpoints[eid] = endpoint
        self.versions[eid] = 1
        self.releases[eid] = [self._release(1, [])]
        self.workers[eid] = []
        return 201, copy.deepcopy(endpoint)

    def _release(self, version: int, diff: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": secrets.token_hex(4),
            "version": version,
            "source": "MANUAL",
            "buildId": None,
            "createdByUserId": None,
            "workerCount": 0,
            "createdAt": _now(),
            "diff": diff,
        }

    def _op_updateEndpoint(self, params, query, body):
        endpoint = self._endpoint(params["id"])
        if "cpu" in body:
            raise Problem(400, "compute family cannot change")
        self._check_compute(
            {
                "workers": {**endpoint["workers"], **body.get("workers", {})},
                **{k: v for k, v in body.items() if k != "workers"},
            }
        )
        new = copy.deepcopy(endpoint)
        if "templateId" in body and not self.ignore_template_on_patch:
            container = self._container_from_template(body["templateId"])
            for key in CONTAINER_KEYS:
                new[key] = container[key]
        for key, value in body.items():
            if key == "templateId":
                continue
            if key == "gpu":
                new["gpu"].update(value)
            elif key == "workers":
                new["workers"].update(value)
            elif key == "env":
                new["env"] = value
            else:
                new[key] = value
        diff = [
            {"field": key, "old": endpoint.get(key), "new": new.get(key)}
            for key in sorted(set(endpoint) | set(new))
            if endpoint.get(key) != new.get(key)
        ]
        self.endpoints[params["id"]] = new
        if diff and not self.freeze_releases:
            version = self.versions[params["id"]] + 1
            self.versions[params["id"]] = version
            self.releases[params["id"]].insert(0, self._release(version, diff))
            for worker in self.workers.get(params["id"], []):
                worker["isStale"] = True
        return 200, copy.deepcopy(new)

    def _op_deleteEndpoint(self, params, query, body):
        self._endpoint(params["id"])
        del self.endpoints[params["id"]]
        return 204, None

    def _op_listEndpointWorkers(self, params, query, body):
        self._endpoint(params["id"])
        workers = self.workers.get(params["id"], [])
        summary = {s: 0 for s in ("running", "idle", "initializing", "throttled", "unhealthy")}
        for worker in workers:
            summary[worker["status"].lower()] += 1
        summary["total"] = len(workers)
        return 200, {
            "endpointVersion": self.versions[params["id"]],
            "summary": summary,
            "workers": copy.deepcopy(workers),
        }

    def _op_listEndpointReleases(self, params, query, body):
        self._endpoint(params["id"])
        version = self.versions[params["id"]]
        workers = self.workers.get(params["id"], [])
        on_latest = sum(1 for w in workers if not w["isStale"])
        return 200, {
            "endpointVersion": version,
            "rollout": {
                "inProgress": on_latest < len(workers),
                "workersOnLatest": on_latest,
                "workersTotal": len(workers),
                "percentOnLatest": int(100 * on_latest / len(workers)) if workers else 0,
            },
            "releases": copy.deepcopy(self.releases[params["id"]]),
        }

    def _op_getWorkerLogs(self, params, query, body):
        self._endpoint(params["id"])
        key = (params["id"], params["workerId"])
        if key not in self.logs:
            raise Problem(404, "worker not found")
        tail = int(query.get("tail", ["100"])[-1])
        return 200, self.logs[key][-tail:] if tail else []

    def _op_listTemplates(self, params, query, body):
        return 200, {"templates": [copy.deepcopy(t) for t in self.templates.values()]}

    def _op_getTemplate(self, params, query, body):
        if params["id"] not in self.templates:
            raise Problem(404, "template not found")
        return 200, copy.deepcopy(self.templates[params["id"]])

    def _op_createTemplate(self, params, query, body):
        if any(t["name"] == body["name"] for t in self.templates.values()):
            raise Problem(400, "template names must be unique")
        tid = secrets.token_hex(4)
        template = {
            "id": tid,
            "name": body["name"],
            "image": body["image"],
            "args": body.get("args", ""),
            "disk": body.get("disk", 20),
            "mounts": body.get("mounts", {}),
            "ports": body.get("ports", []),
            "env": body.get("env", {}),
            "registry": body.get("registry"),
            "serverless": body.get("serverless", False),
            "public": body.get("public", False),
            "category": body.get("category", "NVIDIA"),
            "startSsh": body.get("startSsh", True),
            "startJupyter": body.get("startJupyter", True),
            "allowedCudaVersions": body.get("allowedCudaVersions", []),
        }
        self.templates[tid] = template
        return 201, copy.deepcopy(template)

    def _op_updateTemplate(self, params, query, body):
        if params["id"] not in self.templates:
            raise Problem(404, "template not found")
        self.templates[params["id"]].update(copy.deepcopy(body))
        return 200, copy.deepcopy(self.templates[params["id"]])

    def _op_deleteTemplate(self, params, query, body):
        if params["id"] not in self.templates:
            raise Problem(404, "template not found")
        del self.templates[params["id"]]
        return 204, None

    def _op_listNetworkVolumes(self, params, query, body):
        return 200, {"networkVolumes": [copy.deepcopy(v) for v in self.volumes.values()]}

    def _op_createNetworkVolume(self, params, query, body):
        vid = secrets.token_hex(5)
        self.volumes[vid] = {
            "id": vid,
            "name": body["name"],
            "size": body["size"],
            "dataCenter": body["dataCenter"],
            "type": body.get("type", "STANDARD"),
        }
        return 201, copy.deepcopy(self.volumes[vid])

    def _op_updateNetworkVolume(self, params, query, body):
        volume = self.volumes.get(params["id"])
        if volume is None:
            raise Problem(404, "volume not found")
        if "size" in body and body["size"] < volume["size"]:
            raise Problem(400, "network volume storage cannot be reduced")
        volume.update(body)
        return 200, copy.deepcopy(volume)

    def _op_deleteNetworkVolume(self, params, query, body):
        if self.volumes.pop(params["id"], None) is None:
            raise Problem(404, "volume not found")
        return 204, None

    def _op_listGpuTypes(self, params, query, body):
        include = "AVAILABILITY" in ",".join(query.get("include", []))
        gpus = []
        for gid, name, pool, memory, price, level in CATALOG:
            gpu = {
                "id": gid,
                "name": name,
                "pool": pool,
                "manufacturer": "NVIDIA",
                "memory": memory,
                "secure": True,
                "community": level != "NONE",
                "price": {
                    "secure": price,
                    "community": round(price * 0.8, 2),
                    "serverless": round(price * 1.5, 2),
                },
                "maxCount": {"secure": 8, "community": 4},
            }
            if include:
                gpu["availability"] = level
                if level != "NONE":
                    gpu["dataCenters"] = [
                        {"id": "US-TX-3", "name": "US Texas 3", "availability": level}
                    ]
            gpus.append(gpu)
        return 200, {"gpus": gpus}
