"""Preflight rules: every known way a RunPod deployment fails without a word, as data.

Each rule has an id, a severity, why it matters (what RunPod does when you get it wrong)
and a function that inspects the spec and yields findings with the concrete fix. ``apply``
runs these first and refuses on any error. ``python -m deploy check --list`` prints them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from deploy.findings import ERROR, WARNING, Finding, Rules
from deploy.ops.sizes import (
    DISK_BUFFER_GB,
    IMAGE_UNPACK_FACTOR,
    ModelSize,
    recommended_disk_gb,
    recommended_volume_gb,
)
from deploy.ops.spec import EndpointSpec
from deploy.redaction import SECRET_NAME
from deploy.runpod.pools import POOLS, compatible_pools

DATACENTERS = frozenset(
    "EU-RO-1 CA-MTL-1 CA-MTL-2 CA-MTL-3 EU-SE-1 US-IL-1 EUR-IS-1 EUR-IS-2 EUR-IS-3 EU-CZ-1 "
    "US-TX-1 US-TX-3 US-TX-4 US-KS-2 US-KS-3 US-GA-1 US-GA-2 US-WA-1 EU-NL-1 US-CA-2 US-NC-1 "
    "OC-AU-1 US-DE-1 AP-JP-1 EUR-NO-1 EU-FR-1".split()
)
VOLUME_MOUNT = "/runpod-volume"
CACHE_VARS = ("HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_CACHE", "MODEL_DIR", "TORCH_HOME")
TOKEN_PATTERNS = re.compile(
    r"\bhf_[A-Za-z0-9]{20,}|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_\w{20,}|\bglpat-[\w-]{20,}"
    r"|\bsk-[A-Za-z0-9_-]{20,}|\bAKIA[0-9A-Z]{16}\b|\brpa_[A-Za-z0-9]{20,}|\bxox[abpr]-[\w-]{10,}"
)
# https://user:pass@host or https://token@host, unless the credential is a $VARIABLE.
URL_CREDENTIAL = re.compile(r"https?://(?!\$)[^/\s:@'\"]+(?::[^/\s@'\"]+)?@")
RUNPOD_SECRET_REF = re.compile(r"\{\{\s*RUNPOD_SECRET_\w+\s*\}\}")
MASKED_FAILURE = re.compile(r"\|\|\s*(true|:)(\s|;|$|\)|')")
RUNTIME_INSTALL = re.compile(
    r"\b(pip3?|uv pip|conda|mamba|npm|apt-get|apt|apk|yum|dnf)\s+(-\S+\s+)*install\b"
    r"|\bgit\s+(clone|pull)\b|\bcurl\b[^|]*\|\s*(ba)?sh\b|\bwget\b[^|]*\|\s*(ba)?sh\b"
)


@dataclass
class CheckContext:
    """What the rules may consult beyond the spec: real model sizes and this environment."""

    model_sizes: dict[str, ModelSize] = field(default_factory=dict)
    size_errors: dict[str, str] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    # The live GPU catalog with serverless availability (None: not consulted).
    catalog: list[dict] | None = None

    @property
    def models_gb(self) -> float:
        return sum(m.gb for m in self.model_sizes.values())


RULES = Rules()
rule = RULES.rule


def _literal_env(spec: EndpointSpec) -> dict[str, str]:
    return {k: v.literal for k, v in spec.env.items() if v.literal is not None}


@rule(
    "secret-inline",
    ERROR,
    "No secret written inline in the spec's env",
    "Template and endpoint env is stored in plain text and shown to anyone with console access; "
    "a token committed in endpoint.toml also lands in git history.",
)
def _secret_inline(spec, ctx):
    for key, value in _literal_env(spec).items():
        if RUNPOD_SECRET_REF.fullmatch(value.strip()):
            continue  # {{ RUNPOD_SECRET_name }} written out by hand is a reference too
        looks_secret = TOKEN_PATTERNS.search(value) or URL_CREDENTIAL.search(value)
        if looks_secret or (SECRET_NAME.search(key) and value):
            yield (
                f"env.{key} holds a literal secret",
                f'write {key} = {{ from_env = "{key}" }} (read here at apply time) or '
                f'{key} = {{ runpod_secret = "{key.lower()}" }} (a RunPod secret), and rotate '
                "the exposed token",
            )


@rule(
    "secret-in-start-command",
    ERROR,
    "No token in the start command (args / dockerArgs)",
    "dockerArgs are visible in plain text in the template config; the notes found GitHub "
    "tokens hard-coded in clone URLs there.",
)
def _secret_in_args(spec, ctx):
    if TOKEN_PATTERNS.search(spec.args) or URL_CREDENTIAL.search(spec.args):
        yield (
            "endpoint.args contains a token or a URL with credentials",
            "bake the code into the image (no clone at start); if a token is unavoidable put it "
            'in env as { runpod_secret = "..." } and reference $NAME in the command',
        )


@rule(
    "masked-failure",
    ERROR,
    "No `|| true` (or `|| :`) in the start command",
    "`git clone … || true` hides a failed clone (private repo, no auth): the worker starts, "
    "finds no handler and exits with code 2, and the real error is gone.",
)
def _masked_failure(spec, ctx):
    if MASKED_FAILURE.search(spec.args):
        yield (
            "endpoint.args masks a failing command with `|| true`",
            "remove `|| true` so the failure shows in the worker log; better, COPY the handler "
            "into the image and leave args empty",
        )


@rule(
    "runtime-install",
    WARNING,
    "No git clone or package install at worker start",
    "Every cold start repeats the clone/install (minutes of billed GPU time), a registry or "
    "GitHub hiccup becomes a crash loop, and the result is not reproducible.",
)
def _runtime_install(spec, ctx):
    match = RUNTIME_INSTALL.search(spec.args)
    if match:
        yield (
            f"endpoint.args runs `{match.group(0).strip()}` at every start",
            "move installs and the handler into Dockerfile.gpu (RUN pip install …, COPY …) and "
            "push a new image; leave args empty so the image's CMD starts the worker",
        )


@rule(
    "start-command-override",
    WARNING,
    "The image's CMD starts the worker (args empty)",
    "The Dockerfile's CMD should be the single source of truth for the entry point; a "
    "dockerArgs override drifts from the image and is hard to debug.",
)
def _args_override(spec, ctx):
    if spec.args.strip():
        yield (
            "endpoint.args overrides the image's CMD",
            'set args = "" and put the command in Dockerfile.gpu (CMD ["python", "-u", "-m", '
            '"gpu_worker"])',
        )


@rule(
    "workspace-path",
    ERROR,
    "No model or cache path under /workspace",
    "On Serverless the network volume mounts at /runpod-volume, not /workspace (that is "
    "Pods): models written to /workspace land on the container disk, fill it (exit 139) and "
    "re-download on every cold start.",
)
def _workspace(spec, ctx):
    for key, value in _literal_env(spec).items():
        if "/workspace" in value:
            yield (
                f"env.{key} = {value!r} points under /workspace",
                f"use {value.replace('/workspace', VOLUME_MOUNT)}",
            )
    if "/workspace" in spec.args:
        yield ("endpoint.args uses /workspace", f"use {VOLUME_MOUNT} (the Serverless mount)")


@rule(
    "cache-off-volume",
    WARNING,
    "Model and hub cache paths on the network volume",
    "With a volume, a cache left on the container disk re-downloads every cold start and "
    "doubles disk use (the hub downloads into HF_HOME, then copies to the model dir).",
)
def _cache_off_volume(spec, ctx):
    if spec.volume is None:
        return
    env = _literal_env(spec)
    for key in CACHE_VARS:
        value = env.get(key)
        if value and not value.startswith(VOLUME_MOUNT) and "/workspace" not in value:
            yield (
                f"env.{key} = {value!r} is not on the volume",
                f"set {key} under {VOLUME_MOUNT}/",
            )
    if spec.models and "HF_HOME" not in env:
        yield (
            "HF_HOME is not set: hub downloads go to ~/.cache on the container disk",
            f'set HF_HOME = "{VOLUME_MOUNT}/huggingface" (same volume as the model dir)',
        )


@rule(
    "image-size-unknown",
    WARNING,
    "The image's compressed size is stated",
    "Without it the container disk cannot be checked; a disk too small for the unpacked "
    "layers fails with `no space left on device` before any of your code runs.",
)
def _image_size_unknown(spec, ctx):
    if spec.image_compressed_gb is None:
        yield (
            "endpoint.image_compressed_gb is not set",
            "read the compressed size from your registry (Docker Hub `full_size`, `docker "
            "manifest inspect`) and set image_compressed_gb",
        )


@rule(
    "container-disk-image",
    ERROR,
    "Container disk fits the unpacked image",
    f"Unpacked layers need about {IMAGE_UNPACK_FACTOR}x the compressed image plus "
    f"{DISK_BUFFER_GB} GB for runtime files; too little disk fails at container start with "
    "almost no error information.",
)
def _disk_image(spec, ctx):
    need = recommended_disk_gb(spec.image_compressed_gb, 0, with_volume=True)
    if need is not None and spec.container_disk_gb < need:
        yield (
            f"container_disk_gb = {spec.container_disk_gb} < {need} needed for a "
            f"{spec.image_compressed_gb} GB image",
            f"set container_disk_gb = {need} (or more; serverless bills disk only while running)",
        )


@rule(
    "container-disk-models",
    ERROR,
    "Without a volume, the container disk also fits the models",
    "With no network volume the models download onto the container disk at every cold start; "
    "if they do not fit, the worker crashes (exit 139, disk full) in a loop.",
)
def _disk_models(spec, ctx):
    if spec.volume is not None or not ctx.model_sizes:
        return
    models = ctx.models_gb * spec.download_overhead
    need = recommended_disk_gb(spec.image_compressed_gb or 0, models, with_volume=False)
    if spec.container_disk_gb < need:
        yield (
            f"container_disk_gb = {spec.container_disk_gb} < {need} needed for the image and "
            f"{ctx.models_gb:.1f} GB of models (x{spec.download_overhead:g} while downloading)",
            f"add a [volume] for the models (preferred), or set container_disk_gb = {need}",
        )


@rule(
    "volume-too-small",
    ERROR,
    "The network volume fits the models' real size",
    "Model sizes in docs are often wrong (Wan2.1-T2V-14B: documented ~26 GB, really 69 GB); "
    "a volume that fills during download crash-loops silently.",
)
def _volume_small(spec, ctx):
    if spec.volume is None or not ctx.model_sizes:
        return
    need = recommended_volume_gb(ctx.models_gb, spec.download_overhead)
    if spec.volume.size_gb < need:
        yield (
            f"volume.size_gb = {spec.volume.size_gb} < {need} needed: models are "
            f"{ctx.models_gb:.1f} GB on the hub, x{spec.download_overhead:g} download overhead",
            f"set volume.size_gb = {need} (volumes can grow, never shrink)",
        )


@rule(
    "model-size-unverified",
    WARNING,
    "Every model's size was read from the hub",
    "Sizing rules need the real sizes; an unverified guess is how volumes end up too small.",
)
def _size_unverified(spec, ctx):
    for repo, error in ctx.size_errors.items():
        yield (f"could not size {repo}: {error}", "rerun with network access (or HF_TOKEN)")


@rule(
    "large-models-no-volume",
    WARNING,
    "Large models live on a network volume",
    "Container disk alone is fragile for 20 GB+ downloads and they repeat on every cold start.",
)
def _large_models(spec, ctx):
    if spec.volume is None and ctx.models_gb > 20:
        yield (
            f"{ctx.models_gb:.1f} GB of models and no [volume]",
            "add a [volume] in a datacenter that has your GPU tiers, with MODEL_DIR and HF_HOME "
            f"under {VOLUME_MOUNT}",
        )


@rule(
    "unknown-gpu-tier",
    ERROR,
    "GPU tiers are Serverless pool ids",
    "gpu.pools takes pool ids (AMPERE_48), not card names; an unknown id never schedules.",
)
def _unknown_tier(spec, ctx):
    for tier in spec.gpu_tiers:
        if tier not in POOLS:
            yield (f"{tier!r} is not a GPU pool id", f"use one of {', '.join(POOLS)}")


@rule(
    "single-gpu-tier",
    WARNING,
    "More than one GPU tier",
    "With one tier (worse, pinned to a volume's datacenter) workers may never start: jobs "
    "sit IN_QUEUE for hours, health shows 0 workers or a brief `throttled`, and no error.",
)
def _single_tier(spec, ctx):
    if len(spec.gpu_tiers) == 1 and spec.gpu_tiers[0] in POOLS:
        suggestions = compatible_pools(spec.gpu_tiers[0])[:3]
        where = f" in {spec.volume.datacenter}" if spec.volume else ""
        yield (
            f"only {spec.gpu_tiers[0]} is allowed{where}",
            f"gpu_tiers = {[spec.gpu_tiers[0], *suggestions]} (compatible: same or more memory)",
        )


@rule(
    "no-stock-in-datacenter",
    WARNING,
    "The GPU tiers have stock where the volume pins workers",
    "A network volume pins every worker to its datacenter; with no GPU of the allowed tiers "
    "free there, workers never start and jobs wait for hours without an error.",
)
def _no_stock(spec, ctx):
    if ctx.catalog is None or spec.volume is None:
        return
    datacenter = spec.volume.datacenter
    in_stock = {
        gpu.get("pool")
        for gpu in ctx.catalog
        for dc in gpu.get("dataCenters") or []
        if dc.get("id") == datacenter and dc.get("availability") not in (None, "NONE")
    }
    if not in_stock & set(spec.gpu_tiers):
        others = sorted(p for p in in_stock if p in POOLS)
        yield (
            f"no GPU of {', '.join(spec.gpu_tiers)} is in stock in {datacenter} right now",
            f"add tiers that have stock there ({', '.join(others) or 'none listed'}), or put the "
            "volume in a datacenter with stock (`python -m deploy gpus`)",
        )


@rule(
    "execution-timeout-short",
    ERROR,
    "Execution timeout longer than the expected job",
    "RunPod kills a job at the execution timeout (the default was cut to 10 minutes), so long "
    "video jobs fail after burning their GPU time.",
)
def _timeout_short(spec, ctx):
    if spec.expected_job_s is None:
        return
    need = int(spec.expected_job_s * 1.5)
    if spec.execution_timeout_s < need:
        yield (
            f"execution_timeout_s = {spec.execution_timeout_s} but a job takes about "
            f"{spec.expected_job_s:g} s",
            f"set execution_timeout_s = {need} (1.5x the expected job)",
        )


@rule(
    "execution-timeout-range",
    ERROR,
    "Execution timeout within 5 s to 7 days",
    "RunPod rejects execution timeouts outside 5 s to 7 days.",
)
def _timeout_range(spec, ctx):
    if not 5 <= spec.execution_timeout_s <= 7 * 86400:
        yield (f"execution_timeout_s = {spec.execution_timeout_s}", "use 5 to 604800 seconds")


@rule(
    "idle-timeout-range",
    ERROR,
    "Idle timeout within 1 to 3600 s",
    "The REST API accepts idleTimeout 1-3600 seconds; anything else is refused at apply.",
)
def _idle_range(spec, ctx):
    if not 1 <= spec.idle_timeout_s <= 3600:
        yield (
            f"idle_timeout_s = {spec.idle_timeout_s}",
            "use 1 to 3600 (`python -m deploy cost` finds the cheapest one)",
        )


@rule(
    "workers-range",
    ERROR,
    "0 <= workers_min <= workers_max, workers_max >= 1",
    "With workers_max 0 nothing ever runs; min above max is refused.",
)
def _workers_range(spec, ctx):
    if spec.workers_min < 0 or spec.workers_max < 1 or spec.workers_min > spec.workers_max:
        yield (
            f"workers_min = {spec.workers_min}, workers_max = {spec.workers_max}",
            "use 0 <= workers_min <= workers_max and workers_max >= 1",
        )


@rule(
    "workers-quota",
    WARNING,
    "workers_max within the account's quota",
    "Max workers depend on the balance: 5 by default, 10 at $100+, up to 60 at $900+; "
    "asking for more is capped silently.",
)
def _workers_quota(spec, ctx):
    if spec.workers_max > 5:
        yield (
            f"workers_max = {spec.workers_max} exceeds the default quota of 5",
            "check the account's worker quota in the console before relying on it",
        )


@rule(
    "always-on-worker",
    WARNING,
    "workers_min = 0 unless an always-on worker is intended",
    "Each minimum worker is billed around the clock whether or not jobs arrive.",
)
def _always_on(spec, ctx):
    if spec.workers_min > 0:
        yield (
            f"workers_min = {spec.workers_min} keeps {spec.workers_min} GPU(s) billed 24/7",
            "set workers_min = 0 to scale to zero (see `python -m deploy cost`)",
        )


@rule(
    "scaler-value",
    ERROR,
    "Scaler value valid for its type",
    "QUEUE_DELAY takes seconds >= 0.5; REQUEST_COUNT takes a whole number >= 1.",
)
def _scaler(spec, ctx):
    if spec.scaler_type == "QUEUE_DELAY" and spec.scaler_value < 0.5:
        yield (f"QUEUE_DELAY value {spec.scaler_value}", "use 0.5 or more seconds (4 is usual)")
    if spec.scaler_type == "REQUEST_COUNT" and (
        spec.scaler_value < 1 or spec.scaler_value != int(spec.scaler_value)
    ):
        yield (f"REQUEST_COUNT value {spec.scaler_value}", "use a whole number >= 1")


@rule("gpu-count", ERROR, "At least one GPU per worker", "gpu.count must be 1 or more.")
def _gpu_count(spec, ctx):
    if spec.gpu_count < 1:
        yield (f"gpu_count = {spec.gpu_count}", "use gpu_count = 1 (or more for multi-GPU)")


@rule(
    "mutable-image-tag",
    WARNING,
    "The image is pinned to a version tag or digest",
    "Pushing a new image under the same tag (`:latest`) creates no release: the endpoint keeps "
    "running whatever its workers pulled, and you cannot tell which.",
)
def _mutable_tag(spec, ctx):
    image = spec.image
    last = image.rsplit("/", 1)[-1]
    if "@sha256:" not in image and (":" not in last or last.endswith(":latest")):
        yield (
            f"image {image!r} has no version tag",
            "tag each build (e.g. :2026-11-28 or the git sha) and put that tag in the spec",
        )


@rule(
    "volume-size-range",
    ERROR,
    "Volume size within 10 to 4096 GB",
    "The REST API refuses other sizes.",
)
def _volume_range(spec, ctx):
    if spec.volume and not 10 <= spec.volume.size_gb <= 4096:
        yield (f"volume.size_gb = {spec.volume.size_gb}", "use 10 to 4096 GB")


@rule(
    "unknown-datacenter",
    ERROR,
    "The volume's datacenter exists",
    "A network volume pins every worker to its datacenter; a wrong id fails at apply.",
)
def _datacenter(spec, ctx):
    if spec.volume and spec.volume.datacenter not in DATACENTERS:
        yield (
            f"volume.datacenter = {spec.volume.datacenter!r} is not a RunPod datacenter",
            f"use one of {', '.join(sorted(DATACENTERS))}",
        )


@rule(
    "secret-ref-unset",
    WARNING,
    "Every from_env secret is set here",
    "apply reads from_env secrets from this shell; it refuses to send an empty value.",
)
def _secret_unset(spec, ctx):
    for name in spec.missing_secrets(ctx.environ):
        yield (f"${name} is not set in this environment", f"export {name}=… before apply")


def run_checks(spec: EndpointSpec, ctx: CheckContext | None = None) -> list[Finding]:
    """All findings for ``spec``, errors first."""
    return RULES.findings(spec, ctx or CheckContext())
