"""Why jobs wait, as rules over one set of facts: health, workers, log tails, releases and
balance, from RunPod (REST v2, job API, GraphQL balance) or from the local endpoint.

Each rule has an id, a severity, why it matters and a function that reads only ``Facts``
and yields ``(message, fix)``, registered like ``deploy.ops.check``'s preflight rules.
``python -m deploy doctor`` gathers the facts and prints every finding; the web app words
the findings for its pages (``app.endpoints.diagnosis``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from deploy.findings import ERROR, INFO, WARNING, Finding, Rules
from deploy.runpod.pools import compatible_pools
from deploy.runpod.vocabulary import WorkerRow, exit_meaning

__all__ = ["ERROR", "INFO", "WARNING", "Facts", "Finding", "WorkerRow", "diagnose"]
DISK_FULL = re.compile(r"No space left on device|Errno 28|disk quota exceeded", re.I)
OOM = re.compile(r"out of memory|OutOfMemoryError|MemoryError|\bKilled\b|oom-kill", re.I)
MISSING_FILE = re.compile(r"No such file or directory|can't open file|ModuleNotFoundError", re.I)
EXIT_IN_LOG = re.compile(r"exit(?:ed)?(?: with)? (?:code|status) (\d+)", re.I)
ALIVE = ("running", "idle", "ready")
STOPPED_ON_PURPOSE = (None, 0, 143)  # 143: SIGTERM, how an idle worker is scaled away


@dataclass
class Facts:
    target: str  # "runpod" or "local"
    endpoint_id: str
    endpoint_exists: bool | None = None  # per the management API; None when unknown
    endpoint: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    not_found: bool = False
    # One typed row per worker, the same type the app's snapshot and dashboard read.
    workers: list[WorkerRow] = field(default_factory=list)
    summary: dict[str, int] = field(default_factory=dict)
    crash_loop: dict[str, Any] | None = None
    releases: dict[str, Any] | None = None
    balance: dict[str, Any] | None = None
    unavailable: list[str] = field(default_factory=list)
    startup_grace_s: float = 120.0
    # Jobs the web app holds as queued; doctor cannot know them and leaves 0.
    waiting: int = 0
    # When the facts were gathered (epoch seconds): a worker's age is counted to it.
    checked_at: float = field(default_factory=time.time)

    def jobs(self, key: str) -> int:
        return int(((self.health or {}).get("jobs") or {}).get(key) or 0)

    def count(self, state: str) -> int:
        if state in self.summary:
            return int(self.summary[state] or 0)
        return int(((self.health or {}).get("workers") or {}).get(state) or 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def client_balance(self) -> float | None:
        balance = (self.balance or {}).get("clientBalance")
        return balance if isinstance(balance, int | float) else None

    @property
    def spend(self) -> float:
        return (self.balance or {}).get("currentSpendPerHr") or 0

    @property
    def crash_active(self) -> bool:
        return bool((self.crash_loop or {}).get("active"))

    @property
    def pools(self) -> list[str]:
        return list(((self.endpoint or {}).get("gpu") or {}).get("pools") or [])

    @property
    def busy(self) -> int:
        """Workers that hold or can take a job now."""
        return sum(self.count(state) for state in ALIVE)

    @property
    def crashed(self) -> list[WorkerRow]:
        """Workers that died on their own (not stopped by the scaler)."""
        return [
            w
            for w in self.workers
            if w.status in ("unhealthy", "exited") and w.exit_code not in STOPPED_ON_PURPOSE
        ]

    @property
    def crash_looping(self) -> bool:
        """The endpoint says so, or at least two workers crashed and none is alive."""
        alive = any(w.status in ALIVE for w in self.workers)
        return self.crash_active or (len(self.crashed) >= 2 and not alive)

    @property
    def endpoint_queue(self) -> int | None:
        return endpoint_queue(self.health)

    @property
    def worker_counts(self) -> dict[str, int]:
        """Workers by state: the workers report's summary, else ``/health``'s."""
        counts = self.summary or (self.health or {}).get("workers") or {}
        return {k: int(v) for k, v in counts.items() if isinstance(v, int | float)}

    @property
    def no_worker_at_all(self) -> bool:
        return not any(self.worker_counts.values())


def endpoint_queue(health: dict[str, Any] | None) -> int | None:
    """Jobs the endpoint itself counts as queued or running; None when it did not say."""
    jobs = (health or {}).get("jobs")
    if not isinstance(jobs, dict):
        return None
    counts = [jobs.get("inQueue"), jobs.get("inProgress")]
    if not all(isinstance(c, int | float) for c in counts):
        return None
    return int(sum(counts))


def add_report(facts: Facts, report: dict[str, Any], log_lines: int) -> None:
    """Put a ``/workers`` report (the local endpoint's, or RunPod's in that shape) in
    ``facts``: each row parsed once, keeping its last ``log_lines`` log lines."""
    add_summary(facts, report)
    facts.crash_loop = report.get("crashLoop")
    rows = (WorkerRow.from_report(w) for w in report.get("workers") or [])
    facts.workers = [replace(row, log_tail=row.log_tail[-log_lines:]) for row in rows]


def add_summary(facts: Facts, report: dict[str, Any]) -> None:
    """Only the report's counts of workers by state (what ``worker_counts`` reads)."""
    summary = report.get("summary") or {}
    facts.summary = {k: v for k, v in summary.items() if isinstance(v, int)}


RULES = Rules()
rule = RULES.rule


def diagnose(facts: Facts) -> list[Finding]:
    """Plain-words findings, most serious first (rules in order within a severity)."""
    return RULES.findings(facts)


RECREATE = (
    "`python -m deploy apply --recreate` and put the new endpoint id in "
    "RUNPOD_ENDPOINT_ID everywhere (web app, Celery), then restart them"
)


@rule(
    "endpoint-not-found",
    ERROR,
    "The endpoint answers its job API",
    "Every route answering Not Found means a wrong endpoint id or URL, or (on RunPod) an "
    "endpoint that is gone or disabled; no job can be submitted or polled.",
)
def _endpoint_not_found(facts):
    if not facts.not_found:
        return
    if facts.target == "local":
        # No account and no balance here: billing advice would send people the wrong way.
        yield (
            f"the local endpoint at this URL has no endpoint {facts.endpoint_id!r}: it "
            "answers Not Found on every route",
            "give the URL `make run` printed (ending in /v2 or /v2/<endpoint id>), or the id "
            "it serves with --endpoint-id (RUNPOD_ENDPOINT_ID of the stack, 'local' by default)",
        )
    elif facts.endpoint_exists is False:
        yield (
            f"there is no endpoint {facts.endpoint_id} in this account",
            "check RUNPOD_ENDPOINT_ID, or create it with `python -m deploy apply`",
        )
    elif facts.endpoint_exists is None:
        yield (
            f"endpoint {facts.endpoint_id} answers Not Found on every route: a wrong "
            "endpoint id, or an endpoint that is disabled (on RunPod: a negative balance)",
            "check RUNPOD_ENDPOINT_ID; on RunPod add funds, then `python -m deploy apply "
            "--recreate` and update the endpoint id everywhere",
        )


@rule(
    "endpoint-disabled",
    ERROR,
    "An endpoint that exists also answers its job API",
    "RunPod disables an endpoint when the account balance goes negative, and it stays "
    "broken after funds are added; a new endpoint's health also answers Not Found until "
    "its first worker registers.",
)
def _endpoint_disabled(facts):
    if not (facts.not_found and facts.target != "local" and facts.endpoint_exists):
        return
    balance = facts.client_balance
    money = f" (balance ${balance:.2f})" if balance is not None else ""
    if balance is not None and balance >= 0:
        yield (
            f"endpoint {facts.endpoint_id} exists but its job API answers Not Found{money}: "
            "either no worker has ever started on it (health answers Not Found until one "
            "registers), or RunPod disabled it when the balance went negative and it "
            "stayed broken after funds were added",
            "submit a test job and run doctor again once a worker started; if it still "
            f"answers Not Found, {RECREATE}",
        )
    else:
        yield (
            f"endpoint {facts.endpoint_id} exists but its job API answers Not Found{money}: "
            "RunPod disables an endpoint when the account balance goes negative, and it "
            "stays broken after you add funds",
            f"add funds, then {RECREATE}",
        )


@rule(
    "negative-balance",
    ERROR,
    "The account balance is not negative",
    "With a negative balance RunPod stops every worker and disables the endpoints.",
)
def _negative_balance(facts):
    balance = facts.client_balance
    if balance is not None and balance < 0:
        yield (
            f"the account balance is ${balance:.2f}",
            "add funds; endpoints answer Not Found until you do (then `apply --recreate`)",
        )


@rule(
    "low-balance",
    WARNING,
    "The balance lasts at least a day at the current spend",
    "When the balance runs out the endpoint is disabled and answers Not Found.",
)
def _low_balance(facts):
    balance, spend = facts.client_balance, facts.spend
    if balance is not None and balance >= 0 and spend and balance < spend * 24:
        yield (
            f"balance ${balance:.2f} lasts about {balance / spend:.0f} h at ${spend:.3f}/h",
            "add funds before it goes negative: the endpoint then answers Not Found",
        )


def _capacity_fix(facts: Facts) -> str:
    if facts.target == "local":
        return (
            "the local endpoint wants more workers than it has GPUs (--gpus): lower "
            "--workers-max or free a GPU; on RunPod this means no capacity (add GPU tiers)"
        )
    pools = facts.pools
    extra: list[str] = []
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


@rule(
    "throttled",
    ERROR,
    "Workers get a GPU",
    "A throttled worker waits for a GPU of the endpoint's tiers where it may run; jobs sit "
    "IN_QUEUE with no error until one frees up.",
)
def _throttled(facts):
    throttled = facts.count("throttled")
    if throttled:
        queued = facts.jobs("inQueue")
        tiers = ",".join(facts.pools) or "the allowed tiers"
        yield (
            f"{throttled} worker(s) throttled: no GPU of {tiers} is free where the endpoint "
            "may run" + (f"; {queued} job(s) wait" if queued else ""),
            _capacity_fix(facts),
        )


@rule(
    "no-capacity",
    ERROR,
    "RunPod places workers for queued jobs",
    "With no capacity for the tiers in the pinned datacenter RunPod creates no worker at "
    "all, and health shows zero workers in every state.",
)
def _no_capacity(facts):
    queued = facts.jobs("inQueue")
    total = sum(
        facts.count(s) for s in ("running", "idle", "initializing", "throttled", "unhealthy")
    )
    max_workers = ((facts.endpoint or {}).get("workers") or {}).get("max")
    if queued and total == 0 and not facts.crash_active and facts.target == "runpod":
        if max_workers:
            yield (
                f"{queued} job(s) wait and no worker exists in any state: RunPod is not "
                "placing workers (no capacity for these tiers in the pinned datacenter)",
                _capacity_fix(facts),
            )


@dataclass(frozen=True)
class Crash:
    cause: str  # the id of the crash rule that fires
    code: int | None
    lines: list[str]


def crash_of(facts: Facts) -> Crash | None:
    """The crash that matters (its cause, exit code and log lines), or None when none did."""
    crashed = facts.crashed
    if not (facts.crash_active or facts.count("unhealthy") or crashed):
        return None
    loop = facts.crash_loop or {}
    lines = list(loop.get("logTail") or [])
    code = None
    if crashed:
        code = crashed[-1].exit_code
        lines = lines or list(crashed[-1].log_tail)
    else:
        sick = [w for w in facts.workers if w.status == "unhealthy"]
        if sick:
            code, lines = sick[-1].exit_code, lines or list(sick[-1].log_tail)
    text = "\n".join(lines + [str(loop.get("lastError") or "")])
    if code == 139 or DISK_FULL.search(text):
        cause = "disk-full"
    elif code == 137 or OOM.search(text):
        cause = "out-of-memory"
    elif code == 2 or MISSING_FILE.search(text):
        cause = "missing-handler"
    else:
        cause = "crash-loop"
    return Crash(cause, code, lines)


@rule(
    "no-worker",
    WARNING,
    "A worker starts for the web app's queued jobs",
    "Submitting a job starts a worker; when none exists in any state the endpoint cannot "
    "get one (no GPU capacity where it may run) or may run none (workersMax 0).",
)
def _no_worker(facts):
    if facts.waiting and facts.no_worker_at_all and not facts.crash_active:
        yield (
            f"{facts.waiting} job(s) wait and no worker exists in any state",
            "check workersMax and the GPU tiers (`python -m deploy doctor`); on RunPod add "
            "GPU tiers or drop the network volume's datacenter pin",
        )


@rule(
    "finished-upstream",
    INFO,
    "Jobs the web app holds as queued are queued at the endpoint",
    "When the endpoint counts nothing queued or running, jobs the web app still shows as "
    "queued have finished there and their statuses are late (a poll missed, Redis lost).",
)
def _finished_upstream(facts):
    if facts.waiting and facts.endpoint_queue == 0:
        yield (
            f"{facts.waiting} job(s) the web app holds as queued are neither queued nor "
            "running at the endpoint: they finished there",
            "nothing: the reconcile task fetches their statuses (`flask admin reconcile` "
            "runs it now); if they stay, check that Celery beat runs",
        )


def _crash_message(facts: Facts, words: str, lines: list[str]) -> str:
    streak = (facts.crash_loop or {}).get("consecutiveCrashes")
    prefix = (
        f"crash loop ({streak} workers in a row died before taking a job): "
        if facts.crash_active
        else "worker crashed: "
    )
    tail = "\n    ".join(lines[-8:]) if lines else "(no log lines)"
    return f"{prefix}{words}\n  last log lines:\n    {tail}"


def crash_rule(cause: str, title: str, why: str, words: Callable[[int | None], str], fix: str):
    """Register the rule for one crash cause (they exclude each other: ``crash_of`` picks)."""

    @rule(cause, ERROR, title, why)
    def inspect(facts):
        crash = crash_of(facts)
        if crash and crash.cause == cause:
            yield _crash_message(facts, words(crash.code), crash.lines), fix

    return inspect


crash_rule(
    "disk-full",
    "Workers do not fill their disk",
    "Exit 139 or 'no space left on device': the container disk is too small for the image "
    "plus the models written to it.",
    lambda code: "the disk filled up (exit 139 / no space left on device)",
    "raise container_disk_gb (image x2.5 + 20 GB), keep models on the volume "
    "(MODEL_DIR and HF_HOME under /runpod-volume), and size the volume with "
    "`python -m deploy sizes`",
)
crash_rule(
    "out-of-memory",
    "Workers fit in their memory",
    "Exit 137: the kernel or the container runtime killed the worker for lack of GPU VRAM "
    "or system RAM.",
    lambda code: "the worker ran out of memory (exit 137, killed)",
    "use a GPU tier with more memory (gpu_tiers) or lower the batch/resolution",
)
crash_rule(
    "missing-handler",
    "The worker's handler exists",
    "Exit 2: the start command names a file or module the image does not have, so every "
    "worker dies at start-up.",
    lambda code: "the worker's handler file or module is missing (exit 2)",
    "check the image's CMD and WORKDIR point at the handler (python -u -m gpu_worker); "
    "drop any `git clone … || true` from the start command and bake the code in",
)
crash_rule(
    "crash-loop",
    "Workers survive start-up",
    "A worker that dies before taking a job takes none; RunPod keeps starting new ones "
    "and the jobs stay IN_QUEUE.",
    lambda code: f"the worker {exit_meaning(code) or 'crashed'}",
    "read the log tail below (`python -m deploy logs`), fix the start-up error, push a "
    "new image tag and `python -m deploy apply`",
)


@rule(
    "startup-before-handler",
    WARNING,
    "Workers reach runpod.serverless.start() quickly",
    "A worker counts as running while its start-up code (model downloads) runs, but it "
    "takes no job until the handler loop starts.",
)
def _startup_before_handler(facts):
    queued, in_progress = facts.jobs("inQueue"), facts.jobs("inProgress")
    running = facts.count("running")
    starting = [
        w
        for w in facts.workers
        if w.status in ("running", "initializing")
        and not w.current_jobs
        and (w.age_s(facts.checked_at) or 0) > facts.startup_grace_s
    ]
    if queued and not in_progress and (running or starting) and not facts.crash_active:
        shown = running or len(starting)
        state = "running" if running else f"starting for over {facts.startup_grace_s:g} s"
        yield (
            f"{queued} job(s) stay IN_QUEUE while {shown} worker(s) show {state}: a worker "
            "is still in start-up code (model downloads) before runpod.serverless.start(), "
            "which takes no job",
            "read the worker log (`python -m deploy logs`); move downloads into the handler "
            "or onto the volume, and size disk and volume (`python -m deploy check`)",
        )


@rule(
    "stale-queue",
    WARNING,
    "No jobs wait under a broken endpoint",
    "Jobs queued while the endpoint is broken run late (after the fix) or never.",
)
def _stale_queue(facts):
    queued = facts.jobs("inQueue")
    broken = facts.not_found or facts.count("throttled") or facts.crash_active
    if queued and (broken or facts.count("unhealthy")):
        yield (
            f"{queued} job(s) queued under a broken endpoint will likely fail or never run",
            "after fixing the cause, `python -m deploy purge` (the web app then marks those "
            "jobs CANCELLED when their status answers 'request does not exist')",
        )


@rule(
    "rollout-in-progress",
    INFO,
    "Every worker runs the latest release",
    "RunPod rolls a new release out as workers are replaced; until then some run the old one.",
)
def _rollout(facts):
    rollout = (facts.releases or {}).get("rollout") or {}
    if rollout.get("inProgress"):
        yield (
            f"release v{facts.releases.get('endpointVersion')} reached "
            f"{rollout.get('percentOnLatest')}% of workers; the rest run the previous "
            "version until they are replaced",
            "wait for idle workers to cycle, or lower workers to 0 and back to force it",
        )


@rule(
    "storage-spend",
    INFO,
    "Spend with no worker running",
    "Network volumes are billed by the hour whether or not a worker runs.",
)
def _storage_spend(facts):
    spend = facts.spend
    if spend and not facts.count("running") and not facts.not_found:
        yield (
            f"spending ${spend:.3f}/h with no worker running: network volume storage",
            "expected while a volume exists; delete unused volumes to stop it",
        )


@rule(
    "source-unavailable",
    WARNING,
    "Every source of facts answered",
    "A source that cannot be read leaves its part of the diagnosis out.",
)
def _source_unavailable(facts):
    for problem in facts.unavailable:
        yield f"could not read {problem}", "check the API key's permissions and the URLs"
