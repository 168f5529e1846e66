"""``doctor``: read health, workers and their logs, releases, balance and spend, and say in
plain words what is wrong and what to do.

Gathering (``gather_runpod``, ``gather_local``) and diagnosing (``diagnose``) are separate:
the rules below read only ``Facts``, so the same rules serve RunPod (REST v2 + job API +
GraphQL balance) and the local endpoint (job API + its ``/workers`` and logs routes).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from deploy.ops.check import ERROR, WARNING, Finding
from deploy.ops.pools import compatible_pools
from deploy.runpod.jobapi import EndpointNotFound, JobAPI, JobAPIError
from deploy.runpod.management import ManagementAPI, ManagementError, NotFound
from deploy.runpod.vocabulary import exit_meaning, worker_row

INFO = "info"
LOG_LINES = 20
DISK_FULL = re.compile(r"No space left on device|Errno 28|disk quota exceeded", re.I)
OOM = re.compile(r"out of memory|OutOfMemoryError|MemoryError|\bKilled\b|oom-kill", re.I)
MISSING_FILE = re.compile(r"No such file or directory|can't open file|ModuleNotFoundError", re.I)
EXIT_IN_LOG = re.compile(r"exit(?:ed)?(?: with)? (?:code|status) (\d+)", re.I)


@dataclass
class Worker:
    id: str
    status: str  # running | idle | initializing | throttled | unhealthy | exited | stopping
    exit_code: int | None = None
    log_tail: list[str] = field(default_factory=list)
    current_jobs: int | None = None
    age_s: float | None = None  # seconds since the worker started


@dataclass
class Facts:
    target: str  # "runpod" or "local"
    endpoint_id: str
    endpoint_exists: bool | None = None  # per the management API; None when unknown
    endpoint: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    not_found: bool = False
    workers: list[Worker] = field(default_factory=list)
    summary: dict[str, int] = field(default_factory=dict)
    crash_loop: dict[str, Any] | None = None
    releases: dict[str, Any] | None = None
    balance: dict[str, Any] | None = None
    unavailable: list[str] = field(default_factory=list)
    startup_grace_s: float = 120.0

    def jobs(self, key: str) -> int:
        return int(((self.health or {}).get("jobs") or {}).get(key) or 0)

    def count(self, state: str) -> int:
        if state in self.summary:
            return int(self.summary[state] or 0)
        return int(((self.health or {}).get("workers") or {}).get(state) or 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _job_health(facts: Facts, jobapi: JobAPI) -> None:
    try:
        facts.health = jobapi.health()
    except EndpointNotFound:
        facts.not_found = True
    except JobAPIError as exc:
        facts.unavailable.append(f"health: {exc}")


def gather_local(jobapi: JobAPI, log_lines: int = LOG_LINES) -> Facts:
    """Facts from the local endpoint: job-API health plus its ``/workers`` route."""
    facts = Facts(target="local", endpoint_id=jobapi.endpoint_id)
    _job_health(facts, jobapi)
    if facts.not_found:
        return facts
    try:
        data = jobapi.workers()
    except JobAPIError as exc:
        facts.unavailable.append(f"workers: {type(exc).__name__}")
        return facts
    facts.summary = {k: v for k, v in (data.get("summary") or {}).items() if isinstance(v, int)}
    facts.crash_loop = data.get("crashLoop")
    for w in data.get("workers") or []:
        state = w.get("state") or "unknown"
        if w.get("exitedAt") is not None:
            state = "exited"
        facts.workers.append(
            Worker(
                id=w["id"],
                status=state,
                exit_code=w.get("exitCode"),
                log_tail=list(w.get("logTail") or [])[-log_lines:],
                current_jobs=len(w.get("currentJobs") or []),
                age_s=time.time() - w["startedAt"] if w.get("startedAt") else None,
            )
        )
    return facts


def gather_runpod(api: ManagementAPI, jobapi: JobAPI, log_lines: int = LOG_LINES) -> Facts:
    """Facts from RunPod: REST v2 endpoint, workers, logs, releases; job-API health; balance."""
    eid = jobapi.endpoint_id
    facts = Facts(target="runpod", endpoint_id=eid)
    try:
        facts.endpoint = api.get_endpoint(eid)
        facts.endpoint_exists = True
    except NotFound:
        facts.endpoint_exists = False
    except ManagementError as exc:
        facts.unavailable.append(f"endpoint: {exc}")
    _job_health(facts, jobapi)
    try:
        facts.balance = api.balance()
    except ManagementError as exc:
        facts.unavailable.append(f"balance: {exc}")
    if not facts.endpoint_exists:
        return facts
    try:
        data = api.list_workers(eid)
        facts.summary = dict(data.get("summary") or {})
        for w in data.get("workers") or []:
            row = worker_row(w)
            facts.workers.append(Worker(id=row["id"], status=row["state"], age_s=row["uptimeS"]))
    except ManagementError as exc:
        facts.unavailable.append(f"workers: {exc}")
    for worker in facts.workers:
        if worker.status in ("unhealthy", "running", "initializing"):
            try:
                worker.log_tail = api.worker_logs(eid, worker.id, tail=log_lines)
            except ManagementError as exc:
                facts.unavailable.append(f"logs of {worker.id}: {exc}")
            found = [int(m) for line in worker.log_tail for m in EXIT_IN_LOG.findall(line)]
            worker.exit_code = found[-1] if found else None
    try:
        facts.releases = api.list_releases(eid)
    except ManagementError as exc:
        facts.unavailable.append(f"releases: {exc}")
    return facts


def _pools(facts: Facts) -> list[str]:
    return list(((facts.endpoint or {}).get("gpu") or {}).get("pools") or [])


def _capacity_fix(facts: Facts) -> str:
    if facts.target == "local":
        return (
            "the local endpoint wants more workers than it has GPUs (--gpus): lower "
            "--workers-max or free a GPU; on RunPod this means no capacity (add GPU tiers)"
        )
    pools = _pools(facts)
    extra = []
    for pool in pools:
        extra += [p for p in compatible_pools(pool) if p not in pools and p not in extra]
    volumes = (facts.endpoint or {}).get("networkVolumes") or []
    parts = []
    if extra:
        parts.append(f"add GPU tiers {','.join(extra[:3])} to gpu_tiers")
    else:
        parts.append("add every compatible GPU tier to gpu_tiers")
    if volumes:
        parts.append(
            "or unpin the datacenter (drop the network volume, or move it to a "
            "datacenter with stock: `python -m deploy gpus`)"
        )
    else:
        parts.append("or check stock with `python -m deploy gpus`")
    return ", ".join(parts) + ", then `python -m deploy apply`"


def _crash_cause(code: int | None, lines: list[str]) -> tuple[str, str, str]:
    """(rule id, plain words, fix) for a crashed worker, from its exit code and log."""
    text = "\n".join(lines)
    if code == 139 or DISK_FULL.search(text):
        return (
            "disk-full",
            "the disk filled up (exit 139 / no space left on device)",
            "raise container_disk_gb (image x2.5 + 20 GB), keep models on the volume "
            "(MODEL_DIR and HF_HOME under /runpod-volume), and size the volume with "
            "`python -m deploy sizes`",
        )
    if code == 137 or OOM.search(text):
        return (
            "out-of-memory",
            "the worker ran out of memory (exit 137, killed)",
            "use a GPU tier with more memory (gpu_tiers) or lower the batch/resolution",
        )
    if code == 2 or MISSING_FILE.search(text):
        return (
            "missing-handler",
            "the worker's handler file or module is missing (exit 2)",
            "check the image's CMD and WORKDIR point at the handler (python -u -m gpu_worker); "
            "drop any `git clone … || true` from the start command and bake the code in",
        )
    return (
        "crash-loop",
        f"the worker {exit_meaning(code) or 'crashed'}",
        "read the log tail below (`python -m deploy logs`), fix the start-up error, push a "
        "new image tag and `python -m deploy apply`",
    )


def diagnose(facts: Facts) -> list[Finding]:
    """Plain-words findings, most serious first."""
    findings: list[Finding] = []

    def add(rule: str, severity: str, message: str, fix: str) -> None:
        findings.append(Finding(rule, severity, message, fix))

    balance = (facts.balance or {}).get("clientBalance")
    spend = (facts.balance or {}).get("currentSpendPerHr") or 0
    if facts.not_found and facts.target == "local":
        # No account and no balance here: billing advice would send people the wrong way.
        add(
            "endpoint-not-found",
            ERROR,
            f"the local endpoint at this URL has no endpoint {facts.endpoint_id!r}: it "
            "answers Not Found on every route",
            "give the URL `make run` printed (ending in /v2 or /v2/<endpoint id>), or the id "
            "it serves with --endpoint-id (RUNPOD_ENDPOINT_ID of the stack, 'local' by default)",
        )
    elif facts.not_found:
        money = f" (balance ${balance:.2f})" if isinstance(balance, int | float) else ""
        recreate = (
            "`python -m deploy apply --recreate` and put the new endpoint id in "
            "RUNPOD_ENDPOINT_ID everywhere (web app, Celery), then restart them"
        )
        if facts.endpoint_exists and isinstance(balance, int | float) and balance >= 0:
            add(
                "endpoint-disabled",
                ERROR,
                f"endpoint {facts.endpoint_id} exists but its job API answers Not Found{money}: "
                "either no worker has ever started on it (health answers Not Found until one "
                "registers), or RunPod disabled it when the balance went negative and it "
                "stayed broken after funds were added",
                "submit a test job and run doctor again once a worker started; if it still "
                f"answers Not Found, {recreate}",
            )
        elif facts.endpoint_exists:
            add(
                "endpoint-disabled",
                ERROR,
                f"endpoint {facts.endpoint_id} exists but its job API answers Not Found{money}: "
                "RunPod disables an endpoint when the account balance goes negative, and it "
                "stays broken after you add funds",
                f"add funds, then {recreate}",
            )
        elif facts.endpoint_exists is False:
            add(
                "endpoint-not-found",
                ERROR,
                f"there is no endpoint {facts.endpoint_id} in this account",
                "check RUNPOD_ENDPOINT_ID, or create it with `python -m deploy apply`",
            )
        else:
            add(
                "endpoint-not-found",
                ERROR,
                f"endpoint {facts.endpoint_id} answers Not Found on every route: a wrong "
                "endpoint id, or an endpoint that is disabled (on RunPod: a negative balance)",
                "check RUNPOD_ENDPOINT_ID; on RunPod add funds, then `python -m deploy apply "
                "--recreate` and update the endpoint id everywhere",
            )
    if isinstance(balance, int | float) and balance < 0:
        add(
            "negative-balance",
            ERROR,
            f"the account balance is ${balance:.2f}",
            "add funds; endpoints answer Not Found until you do (then `apply --recreate`)",
        )
    elif isinstance(balance, int | float) and spend and balance < spend * 24:
        add(
            "low-balance",
            WARNING,
            f"balance ${balance:.2f} lasts about {balance / spend:.0f} h at ${spend:.3f}/h",
            "add funds before it goes negative: the endpoint then answers Not Found",
        )

    queued, in_progress = facts.jobs("inQueue"), facts.jobs("inProgress")
    throttled = facts.count("throttled")
    if throttled:
        tiers = ",".join(_pools(facts)) or "the allowed tiers"
        add(
            "throttled",
            ERROR,
            f"{throttled} worker(s) throttled: no GPU of {tiers} is free where the endpoint "
            "may run" + (f"; {queued} job(s) wait" if queued else ""),
            _capacity_fix(facts),
        )
    total = sum(
        facts.count(s) for s in ("running", "idle", "initializing", "throttled", "unhealthy")
    )
    crash_active = bool((facts.crash_loop or {}).get("active"))
    max_workers = ((facts.endpoint or {}).get("workers") or {}).get("max")
    if queued and total == 0 and not crash_active and facts.target == "runpod" and max_workers:
        add(
            "no-capacity",
            ERROR,
            f"{queued} job(s) wait and no worker exists in any state: RunPod is not placing "
            "workers (no capacity for these tiers in the pinned datacenter)",
            _capacity_fix(facts),
        )

    crashed = [
        w
        for w in facts.workers
        if w.status in ("unhealthy", "exited") and w.exit_code not in (None, 0, 143)
    ]
    if crash_active or facts.count("unhealthy") or crashed:
        loop = facts.crash_loop or {}
        lines = list(loop.get("logTail") or [])
        code = None
        if crashed:
            code = crashed[-1].exit_code
            lines = lines or crashed[-1].log_tail
        else:
            sick = [w for w in facts.workers if w.status == "unhealthy"]
            if sick:
                code, lines = sick[-1].exit_code, lines or sick[-1].log_tail
        rule_id, words, fix = _crash_cause(code, lines + [str(loop.get("lastError") or "")])
        streak = loop.get("consecutiveCrashes")
        prefix = (
            f"crash loop ({streak} workers in a row died before taking a job): "
            if crash_active
            else "worker crashed: "
        )
        tail = "\n    ".join(lines[-8:]) if lines else "(no log lines)"
        add(rule_id, ERROR, f"{prefix}{words}\n  last log lines:\n    {tail}", fix)

    running = facts.count("running")
    starting = [
        w
        for w in facts.workers
        if w.status in ("running", "initializing")
        and not w.current_jobs
        and (w.age_s or 0) > facts.startup_grace_s
    ]
    if queued and not in_progress and (running or starting) and not crash_active:
        shown = running or len(starting)
        state = "running" if running else f"starting for over {facts.startup_grace_s:g} s"
        add(
            "startup-before-handler",
            WARNING,
            f"{queued} job(s) stay IN_QUEUE while {shown} worker(s) show {state}: a worker "
            "is still in start-up code (model downloads) before runpod.serverless.start(), "
            "which takes no job",
            "read the worker log (`python -m deploy logs`); move downloads into the handler "
            "or onto the volume, and size disk and volume (`python -m deploy check`)",
        )
    if queued and (facts.not_found or throttled or crash_active or facts.count("unhealthy")):
        add(
            "stale-queue",
            WARNING,
            f"{queued} job(s) queued under a broken endpoint will likely fail or never run",
            "after fixing the cause, `python -m deploy purge` (the web app then marks those "
            "jobs CANCELLED when their status answers 'request does not exist')",
        )

    rollout = (facts.releases or {}).get("rollout") or {}
    if rollout.get("inProgress"):
        add(
            "rollout-in-progress",
            INFO,
            f"release v{facts.releases.get('endpointVersion')} reached "
            f"{rollout.get('percentOnLatest')}% of workers; the rest run the previous version "
            "until they are replaced",
            "wait for idle workers to cycle, or lower workers to 0 and back to force it",
        )
    if spend and not running and not facts.not_found:
        add(
            "storage-spend",
            INFO,
            f"spending ${spend:.3f}/h with no worker running: network volume storage",
            "expected while a volume exists; delete unused volumes to stop it",
        )
    for problem in facts.unavailable:
        add(
            "source-unavailable",
            WARNING,
            f"could not read {problem}",
            "check the API key's permissions and the URLs",
        )
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    findings.sort(key=lambda f: order[f.severity])
    return findings
