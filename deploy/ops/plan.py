"""``plan``, ``apply``, ``apply --recreate`` and ``destroy``: make RunPod match the spec.

Resources are found by name (template ``<name>-template``, endpoint ``<name>``, volume
``[volume].name``), so applying twice changes nothing. A REST v2 endpoint keeps no link to
its template: a template edit alone never reaches the workers (the notes' silent pitfall).
So when the container settings differ, apply updates the template, then PATCHes the
endpoint with ``templateId`` to re-apply it, and verifies through the releases API that a
new endpoint version exists and carries the change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deploy.ops.spec import EndpointSpec
from deploy.runpod.management import ManagementAPI, ManagementError, NotFound

CONTAINER_FIELDS = ("image", "args", "disk", "env")
Progress = Callable[[str], None]


class ApplyError(RuntimeError):
    """apply could not reach the desired state; the message says where it stopped (exit 1)."""


@dataclass
class Change:
    kind: str  # volume | template | endpoint
    name: str
    action: str  # create | update | noop | blocked | delete
    fields: list[tuple[str, str, str]] = field(default_factory=list)
    note: str = ""
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "id": self.id,
            "fields": [{"field": f, "old": o, "new": n} for f, o, n in self.fields],
            "note": self.note,
        }


@dataclass
class Plan:
    spec: EndpointSpec
    env: dict[str, str | None]
    volume: dict[str, Any] | None = None
    template: dict[str, Any] | None = None
    endpoint: dict[str, Any] | None = None
    changes: list[Change] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return any(c.action not in ("noop",) for c in self.changes)

    def change(self, kind: str) -> Change | None:
        return next((c for c in self.changes if c.kind == kind), None)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


def _env_diff(old: dict[str, str], new: dict[str, str | None]) -> list[tuple[str, str, str]]:
    """Env changes by key only: values may be secrets and never appear in output."""
    rows = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            rows.append((f"env.{key}", "-", "(added)"))
        elif key not in new:
            rows.append((f"env.{key}", "(set)", "(removed)"))
        elif new[key] is None:
            rows.append((f"env.{key}", "(set)", "(unknown here: secret not exported)"))
        elif old[key] != new[key]:
            rows.append((f"env.{key}", "(set)", "(changed)"))
    return rows


def container_body(spec: EndpointSpec, env: dict[str, str | None]) -> dict[str, Any]:
    return {
        "image": spec.image,
        "args": spec.args,
        "disk": spec.container_disk_gb,
        "env": {k: v for k, v in env.items() if v is not None},
    }


def _container_diff(
    current: dict[str, Any], spec: EndpointSpec, env: dict[str, str | None]
) -> list[tuple[str, str, str]]:
    want = container_body(spec, env)
    rows = [
        (key, _show(current.get(key)), _show(want[key]))
        for key in ("image", "args", "disk")
        if current.get(key) != want[key]
    ]
    return rows + _env_diff(current.get("env") or {}, env)


def scaling_body(spec: EndpointSpec) -> dict[str, Any]:
    if spec.scaler_type == "QUEUE_DELAY":
        return {"type": "QUEUE_DELAY", "queueDelay": spec.scaler_value}
    return {"type": "REQUEST_COUNT", "requestCount": int(spec.scaler_value)}


def workers_body(spec: EndpointSpec) -> dict[str, Any]:
    body = {"min": spec.workers_min, "max": spec.workers_max}
    # The API refuses idleTimeout with REQUEST_COUNT scaling on a queue endpoint.
    if spec.scaler_type == "QUEUE_DELAY":
        body["idleTimeout"] = spec.idle_timeout_s
    return body


def endpoint_settings(spec: EndpointSpec, volume_id: str | None) -> dict[str, Any]:
    """The non-container endpoint fields the spec decides (PATCH-able as they are)."""
    return {
        "gpu": {"pools": list(spec.gpu_tiers), "count": spec.gpu_count},
        "workers": workers_body(spec),
        "scaling": scaling_body(spec),
        "timeout": spec.execution_timeout_s * 1000,
        "flashboot": "FLASHBOOT" if spec.flashboot else "OFF",
        "networkVolumes": [volume_id] if volume_id else [],
    }


def _settings_diff(current: dict[str, Any], want: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    gpu = current.get("gpu") or {}
    if gpu.get("pools") != want["gpu"]["pools"]:
        rows.append(("gpu.pools", _show(gpu.get("pools")), _show(want["gpu"]["pools"])))
    if gpu.get("count", 1) != want["gpu"]["count"]:
        rows.append(("gpu.count", _show(gpu.get("count")), _show(want["gpu"]["count"])))
    workers = current.get("workers") or {}
    for key, value in want["workers"].items():
        if workers.get(key) != value:
            rows.append((f"workers.{key}", _show(workers.get(key)), _show(value)))
    if current.get("scaling") != want["scaling"]:
        rows.append(("scaling", _show(current.get("scaling")), _show(want["scaling"])))
    for key in ("timeout", "flashboot", "networkVolumes"):
        if current.get(key) != want[key]:
            rows.append((key, _show(current.get(key)), _show(want[key])))
    return rows


def _find(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    matches = [i for i in items if i.get("name") == name]
    return matches[0] if matches else None


def make_plan(api: ManagementAPI, spec: EndpointSpec, environ: dict[str, str]) -> Plan:
    """Read what exists and list what apply would change; changes nothing."""
    plan = Plan(spec=spec, env=spec.resolved_env(environ))
    if spec.volume is not None:
        plan.volume = _find(api.list_volumes(), spec.volume.name)
        plan.changes.append(_volume_change(spec, plan.volume))
    plan.template = _find(api.list_templates(), spec.template_name)
    if plan.template is None:
        plan.changes.append(Change("template", spec.template_name, "create"))
    else:
        rows = _container_diff(plan.template, spec, plan.env)
        plan.changes.append(
            Change(
                "template",
                spec.template_name,
                "update" if rows else "noop",
                rows,
                id=plan.template["id"],
            )
        )
    plan.endpoint = _find(api.list_endpoints(), spec.name)
    volume_id = plan.volume["id"] if plan.volume else ("(new volume)" if spec.volume else None)
    want = endpoint_settings(spec, volume_id)
    if plan.endpoint is None:
        plan.changes.append(Change("endpoint", spec.name, "create"))
    else:
        rows = _settings_diff(plan.endpoint, want) + _container_diff(plan.endpoint, spec, plan.env)
        note = (
            "new release (container settings changed)"
            if any(r[0].split(".")[0] in CONTAINER_FIELDS for r in rows)
            else ""
        )
        plan.changes.append(
            Change(
                "endpoint",
                spec.name,
                "update" if rows else "noop",
                rows,
                note,
                id=plan.endpoint["id"],
            )
        )
    return plan


def _volume_change(spec: EndpointSpec, current: dict[str, Any] | None) -> Change:
    assert spec.volume is not None
    if current is None:
        return Change(
            "volume",
            spec.volume.name,
            "create",
            [("size", "-", str(spec.volume.size_gb)), ("dataCenter", "-", spec.volume.datacenter)],
        )
    if current["dataCenter"] != spec.volume.datacenter:
        return Change(
            "volume",
            spec.volume.name,
            "blocked",
            [("dataCenter", current["dataCenter"], spec.volume.datacenter)],
            "a volume's datacenter is immutable: give [volume] a new name to create another "
            "volume there (the old one keeps its data and its cost until you delete it)",
            id=current["id"],
        )
    if current["size"] < spec.volume.size_gb:
        return Change(
            "volume",
            spec.volume.name,
            "update",
            [("size", str(current["size"]), str(spec.volume.size_gb))],
            id=current["id"],
        )
    note = ""
    if current["size"] > spec.volume.size_gb:
        note = f"volume is {current['size']} GB; volumes cannot shrink, keeping it"
    return Change("volume", spec.volume.name, "noop", note=note, id=current["id"])


def apply_plan(
    api: ManagementAPI,
    plan: Plan,
    progress: Progress = lambda _: None,
    *,
    release_wait_s: float = 60.0,
) -> dict[str, Any]:
    """Carry out ``plan``; returns ids and the verified release. ``ApplyError`` on failure."""
    spec = plan.spec
    missing = [spec.env[k].from_env for k, v in plan.env.items() if v is None]
    if missing:
        raise ApplyError(f"refusing to apply: {', '.join(missing)} not set in this environment")
    result: dict[str, Any] = {"volumeId": None, "templateId": None, "endpointId": None}
    volume = _apply_volume(api, plan, progress)
    result["volumeId"] = volume["id"] if volume else None
    template = _apply_template(api, plan, progress)
    result["templateId"] = template["id"]
    want = endpoint_settings(spec, result["volumeId"])
    if plan.endpoint is None:
        progress(f"creating endpoint {spec.name}")
        body = {"name": spec.name, "type": "QUEUE", "templateId": template["id"], **want}
        endpoint = api.create_endpoint(body)
        result["endpointId"] = endpoint["id"]
        result["created"] = True
        return result
    endpoint = plan.endpoint
    result["endpointId"] = endpoint["id"]
    settings = _settings_diff(endpoint, want)
    container = _container_diff(endpoint, spec, plan.env)
    if not settings and not container:
        progress(f"endpoint {spec.name} already matches the spec")
        return result
    body: dict[str, Any] = {}
    for row in settings:
        top = row[0].split(".")[0]
        body[top] = want[top]
    before = api.list_releases(endpoint["id"]).get("endpointVersion") or 0
    if container:
        body["templateId"] = template["id"]
    progress(f"updating endpoint {spec.name}: {', '.join(sorted(body))}")
    api.update_endpoint(endpoint["id"], body)
    result["release"] = verify_release(
        api,
        endpoint["id"],
        before,
        [r[0] for r in settings + container],
        progress,
        wait_s=release_wait_s,
    )
    if container:
        # A release exists; make sure it carries the new container settings.
        left = _container_diff(api.get_endpoint(endpoint["id"]), spec, plan.env)
        if left:
            raise ApplyError(
                f"release v{result['release']['version']} of endpoint {endpoint['id']} does "
                f"not carry {', '.join(r[0] for r in left)}: the template change did not reach "
                "it; rerun apply and check the release history in the console"
            )
    return result


def _apply_volume(api: ManagementAPI, plan: Plan, progress: Progress) -> dict[str, Any] | None:
    spec = plan.spec
    change = plan.change("volume")
    if spec.volume is None or change is None:
        return None
    if change.action == "blocked":
        raise ApplyError(f"volume {spec.volume.name}: {change.note}")
    if change.action == "create":
        progress(
            f"creating network volume {spec.volume.name} ({spec.volume.size_gb} GB, "
            f"{spec.volume.datacenter})"
        )
        return api.create_volume(
            {
                "name": spec.volume.name,
                "size": spec.volume.size_gb,
                "dataCenter": spec.volume.datacenter,
            }
        )
    if change.action == "update":
        progress(f"growing network volume {spec.volume.name} to {spec.volume.size_gb} GB")
        return api.update_volume(plan.volume["id"], {"size": spec.volume.size_gb})
    return plan.volume


def _apply_template(api: ManagementAPI, plan: Plan, progress: Progress) -> dict[str, Any]:
    spec = plan.spec
    body = container_body(spec, plan.env)
    if plan.template is None:
        progress(f"creating template {spec.template_name}")
        return api.create_template(
            {
                "name": spec.template_name,
                **body,
                "serverless": True,
                "startSsh": False,
                "startJupyter": False,
            }
        )
    if _container_diff(plan.template, spec, plan.env):
        progress(f"updating template {spec.template_name}")
        return api.update_template(plan.template["id"], body)
    return plan.template


def verify_release(
    api: ManagementAPI,
    endpoint_id: str,
    before: int,
    changed: list[str],
    progress: Progress,
    *,
    wait_s: float = 60.0,
) -> dict[str, Any]:
    """Poll the releases API until a version newer than ``before`` is listed."""
    deadline = time.monotonic() + wait_s
    delay = 0.2
    while True:
        releases = api.list_releases(endpoint_id)
        version = releases.get("endpointVersion") or 0
        newest = (releases.get("releases") or [None])[0]
        if version > before and newest and (newest.get("version") in (None, version)):
            rollout = releases.get("rollout") or {}
            fields = [d.get("field") for d in newest.get("diff") or []]
            progress(
                f"release v{version} is live ({len(fields)} field(s) changed); "
                f"{rollout.get('percentOnLatest', 0)}% of "
                f"{rollout.get('workersTotal', 0)} worker(s) on it"
            )
            return {"version": version, "id": newest.get("id"), "diff": fields, "rollout": rollout}
        if time.monotonic() > deadline:
            raise ApplyError(
                f"endpoint {endpoint_id} still at release v{version} after {wait_s:.0f} s: the "
                f"change ({', '.join(changed)}) has not reached it; rerun apply, and check the "
                "release history in the console"
            )
        progress(f"waiting for a new release (now v{version})")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def recreate(api: ManagementAPI, plan: Plan, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Delete the endpoint and create it again with the spec's settings (the fix for an
    endpoint that answers Not Found after the balance went negative)."""
    if plan.endpoint is not None:
        old = plan.endpoint["id"]
        _delete_endpoint(api, old, progress)
        plan.endpoint = None
        # Deleting an endpoint may take its bound template with it: look again.
        plan.template = _find(api.list_templates(), plan.spec.template_name)
        plan.changes = [c for c in plan.changes if c.kind == "volume"]
    else:
        old = None
    result = apply_plan(api, plan, progress)
    result["replaced"] = old
    return result


def _delete_endpoint(api: ManagementAPI, endpoint_id: str, progress: Progress) -> None:
    progress(f"scaling endpoint {endpoint_id} to zero workers")
    try:
        api.update_endpoint(endpoint_id, {"workers": {"min": 0, "max": 0}})
    except NotFound:
        return
    progress(f"deleting endpoint {endpoint_id}")
    api.delete_endpoint(endpoint_id)


def destroy(
    api: ManagementAPI,
    spec: EndpointSpec,
    progress: Progress = lambda _: None,
    *,
    include_volume: bool = False,
) -> list[Change]:
    """Delete the endpoint and its template (and the volume only when asked)."""
    done: list[Change] = []
    endpoint = _find(api.list_endpoints(), spec.name)
    if endpoint:
        _delete_endpoint(api, endpoint["id"], progress)
        done.append(Change("endpoint", spec.name, "delete", id=endpoint["id"]))
    template = _find(api.list_templates(), spec.template_name)
    if template:
        progress(f"deleting template {spec.template_name}")
        try:
            api.delete_template(template["id"])
            done.append(Change("template", spec.template_name, "delete", id=template["id"]))
        except NotFound:
            pass
    if spec.volume and include_volume:
        volume = _find(api.list_volumes(), spec.volume.name)
        if volume:
            progress(f"deleting network volume {spec.volume.name} (its data is gone)")
            api.delete_volume(volume["id"])
            done.append(Change("volume", spec.volume.name, "delete", id=volume["id"]))
    return done


__all__ = [
    "ApplyError",
    "Change",
    "ManagementError",
    "Plan",
    "apply_plan",
    "destroy",
    "make_plan",
    "recreate",
]
