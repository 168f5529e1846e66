"""Client for RunPod's management API: REST v2, plus GraphQL only for balance and spend.

REST v2 (``RUNPOD_REST_URL``, default ``https://api.runpod.io/v2``) covers templates,
endpoints, network volumes, workers, worker logs, releases and the GPU catalog. GraphQL
(``RUNPOD_GRAPHQL_URL``) is deprecated and retires in early 2027; it is used for one query,
``myself { clientBalance currentSpendPerHr spendLimit }``, in ``balance()`` alone, so it can
go when GraphQL does. The API key is sent as a Bearer header and never appears in errors.
"""

from __future__ import annotations

import json
from typing import Any

import requests
import urllib3

from deploy.runpod.retry import Backoff
from deploy.runpod.vocabulary import DEFAULT_GRAPHQL_URL, DEFAULT_REST_URL

# Reads are retried on errors, 429 and 5xx. A write is sent again only when it never left or
# was refused with 429 (nothing happened); other failures surface, and rerunning apply is
# safe because it finds what exists by name.
BACKOFF = Backoff(base=0.25, cap=4.0, attempts=4)
READS = frozenset({"GET"})
BALANCE_QUERY = "query Balance { myself { clientBalance currentSpendPerHr spendLimit } }"


class ManagementError(RuntimeError):
    """A management call failed; ``str()`` says what and what to do (exit code 2)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(ManagementError):
    pass


class ManagementAPI:
    """One account's RunPod management API. Reads retry on 429/5xx; writes never blindly."""

    def __init__(
        self,
        api_key: str,
        rest_url: str | None = None,
        graphql_url: str | None = None,
        *,
        timeout: float = 20.0,
        session: requests.Session | None = None,
    ) -> None:
        if not api_key:
            raise ManagementError("RUNPOD_API_KEY is not set: export it (never pass it as a flag)")
        # The callers' settings read RUNPOD_REST_URL / RUNPOD_GRAPHQL_URL; empty means RunPod's.
        self.rest_url = (rest_url or DEFAULT_REST_URL).rstrip("/")
        self.graphql_url = graphql_url or DEFAULT_GRAPHQL_URL
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._timeout = (3.05, timeout)
        self._session = session or requests.Session()
        self._session.mount(self.rest_url, BACKOFF.adapter(READS))

    def __repr__(self) -> str:
        return f"ManagementAPI(rest_url={self.rest_url!r})"

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        stream: bool = False,
        read_timeout: float | None = None,
    ) -> requests.Response:
        url = f"{self.rest_url}/{path.lstrip('/')}"
        read = method == "GET"
        try:
            resp = self._session.request(
                method,
                url,
                json=body,
                params=params,
                headers=self._headers,
                timeout=(self._timeout[0], read_timeout or self._timeout[1]),
                stream=stream,
            )
        except requests.RequestException as exc:
            raise ManagementError(
                f"{method} {path}: cannot reach {self.rest_url} ({type(exc).__name__}); "
                "check RUNPOD_REST_URL and the network"
                + ("" if read else ", then rerun (apply finds what already exists)")
            ) from exc
        if resp.ok:
            return resp
        problem = _problem(resp)
        if resp.status_code == 401:
            raise ManagementError("RunPod refused the API key (401): check RUNPOD_API_KEY", 401)
        if resp.status_code == 403:
            raise ManagementError(
                f"{method} {path}: the API key lacks permission (403): {problem}", 403
            )
        if resp.status_code == 404:
            raise NotFound(f"{method} {path}: not found ({problem})", 404)
        raise ManagementError(
            f"{method} {path} answered {resp.status_code}: {problem}", resp.status_code
        )

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._call(method, path, **kw)
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise ManagementError(f"{method} {path}: RunPod sent a non-JSON answer") from exc

    # Endpoints
    def list_endpoints(self) -> list[dict[str, Any]]:
        return self._json("GET", "serverless")["endpoints"]

    def get_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        return self._json("GET", f"serverless/{endpoint_id}")

    def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "serverless", body=body)

    def update_endpoint(self, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("PATCH", f"serverless/{endpoint_id}", body=body)

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._json("DELETE", f"serverless/{endpoint_id}")

    def list_workers(self, endpoint_id: str) -> dict[str, Any]:
        return self._json("GET", f"serverless/{endpoint_id}/workers")

    def list_releases(self, endpoint_id: str) -> dict[str, Any]:
        return self._json("GET", f"serverless/{endpoint_id}/releases")

    def worker_logs(
        self, endpoint_id: str, worker_id: str, tail: int = 100, *, quiet_s: float = 2.0
    ) -> list[str]:
        """The last ``tail`` log lines: the SSE backfill, read until the stream goes quiet
        for ``quiet_s`` (it stays open for live lines) or ``tail`` lines have arrived."""
        resp = self._call(
            "GET",
            f"serverless/{endpoint_id}/workers/{worker_id}/logs",
            params={"tail": tail},
            stream=True,
            read_timeout=quiet_s,
        )
        lines: list[str] = []
        buffer = b""
        try:
            while len(lines) < tail:
                # read1 returns what has arrived; iter_lines would wait for a full chunk
                # and lose it when the quiet-period timeout fires.
                chunk = resp.raw.read1(65536)
                if not chunk:
                    break
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                lines += _sse_lines(complete)
        except (requests.RequestException, OSError, urllib3.exceptions.HTTPError):
            pass  # quiet for quiet_s: the backfill is over
        finally:
            resp.close()
        return (lines + _sse_lines([buffer]))[:tail]

    # Templates
    def list_templates(self) -> list[dict[str, Any]]:
        return self._json("GET", "templates")["templates"]

    def create_template(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "templates", body=body)

    def update_template(self, template_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("PATCH", f"templates/{template_id}", body=body)

    def delete_template(self, template_id: str) -> None:
        self._json("DELETE", f"templates/{template_id}")

    # Network volumes
    def list_volumes(self) -> list[dict[str, Any]]:
        return self._json("GET", "network-volumes")["networkVolumes"]

    def create_volume(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "network-volumes", body=body)

    def update_volume(self, volume_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("PATCH", f"network-volumes/{volume_id}", body=body)

    def delete_volume(self, volume_id: str) -> None:
        self._json("DELETE", f"network-volumes/{volume_id}")

    # Catalog
    def gpu_catalog(self, count: int = 1) -> list[dict[str, Any]]:
        params = {"include": "AVAILABILITY", "product": "SERVERLESS", "count": count}
        return self._json("GET", "catalog/gpus", params=params)["gpus"]

    # GraphQL: balance and spend only (REST v2 has no account balance yet).
    def balance(self) -> dict[str, float | None]:
        """``{"clientBalance", "currentSpendPerHr", "spendLimit"}`` from GraphQL."""
        try:
            resp = self._session.post(
                self.graphql_url,
                json={"query": BALANCE_QUERY},
                headers=self._headers,
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise ManagementError(
                f"cannot reach {self.graphql_url} for the balance ({type(exc).__name__})"
            ) from exc
        if resp.status_code == 401:
            raise ManagementError("RunPod refused the API key (401): check RUNPOD_API_KEY", 401)
        try:
            data = resp.json()
        except ValueError as exc:
            raise ManagementError("GraphQL balance query: non-JSON answer") from exc
        if not resp.ok or data.get("errors"):
            messages = "; ".join(e.get("message", "?") for e in data.get("errors") or [])
            raise ManagementError(f"GraphQL balance query failed: {messages or resp.status_code}")
        myself = (data.get("data") or {}).get("myself") or {}
        return {k: myself.get(k) for k in ("clientBalance", "currentSpendPerHr", "spendLimit")}


def _sse_lines(raw_lines: list[bytes]) -> list[str]:
    """The ``line`` of each SSE ``data:`` event (``{"source", "line", "ts"}``)."""
    lines = []
    for raw in raw_lines:
        text = raw.decode("utf-8", errors="replace").strip()
        if not text.startswith("data:"):
            continue
        try:
            event = json.loads(text[5:].strip())
        except ValueError:
            continue
        lines.append(str(event.get("line", "")) if isinstance(event, dict) else str(event))
    return lines


def _problem(resp: requests.Response) -> str:
    """RFC 9457 problem text (title, detail, errors) without echoing request headers."""
    try:
        body = resp.json()
    except ValueError:
        return resp.reason or str(resp.status_code)
    if not isinstance(body, dict):
        return str(body)[:200]
    parts = [str(body.get("detail") or body.get("title") or body.get("message") or "")]
    parts += [str(e) for e in body.get("errors") or []]
    return "; ".join(p for p in parts if p) or str(resp.status_code)
