"""The operator CLI's settings: every environment variable ``python -m deploy`` reads, once.

Each knob is declared once in ``KNOBS`` with its variable, its default and what it is for;
``OpsSettings.from_env()`` reads them (the one place in ``deploy/ops`` and ``deploy/cli.py``
that touches ``os.environ``; ``tests/deploy/ops/test_settings.py`` holds that line) and
``docs/operations.md`` lists them. A value that does not parse fails with the variable's
name and what it takes, never with a traceback.

pydantic-settings would parse the same strings; it is not used because these knobs are
plain text, one URL list and one float, and it would add two packages to the operator's
image for no line of parsing it removes here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploy.runpod.vocabulary import DEFAULT_GRAPHQL_URL, DEFAULT_JOB_URL, DEFAULT_REST_URL

DEFAULT_ENDPOINTS_DIR = Path("deploy/endpoints")
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


class SettingsError(ValueError):
    """An environment variable is missing or malformed; the message names it (exit code 2)."""


@dataclass(frozen=True)
class Knob:
    env: str
    default: str
    help: str


# The operator CLI's environment, in the order docs/operations.md lists it.
KNOBS: tuple[Knob, ...] = (
    Knob("RUNPOD_API_KEY", "", "RunPod API key; never taken as a flag, never printed"),
    Knob(
        "RUNPOD_ENDPOINT_ID",
        "",
        "endpoint id when only one endpoint is deployed (else the spec's name is looked up)",
    ),
    Knob(
        "RUNPOD_ENDPOINT_IDS",
        "",
        "several endpoints' ids as `name=id,name=id` (names are the spec files' names)",
    ),
    Knob(
        "RUNPOD_ENDPOINT_BASE_URL",
        DEFAULT_JOB_URL,
        "job API base URL ending in /v2; a non-RunPod host means the local endpoint",
    ),
    Knob("RUNPOD_REST_URL", "", f"management API (REST v2); empty: {DEFAULT_REST_URL}"),
    Knob("RUNPOD_GRAPHQL_URL", "", f"GraphQL, for the balance only; empty: {DEFAULT_GRAPHQL_URL}"),
    Knob("HF_ENDPOINT", DEFAULT_HF_ENDPOINT, "the model hub that `check` and `sizes` ask"),
    Knob("HF_TOKEN", "", "hub token for gated models (sent to the hub only)"),
    Knob(
        "DEPLOY_ENDPOINTS_DIR",
        str(DEFAULT_ENDPOINTS_DIR),
        "folder of endpoint specs, one <name>.toml per endpoint",
    ),
    Knob("DATABASE_URL", "", "the app's database, read by SQL for `cost --history-db`"),
    Knob(
        "GPU_PRICE_PER_SECOND",
        "",
        "USD per GPU-second overriding the price book for every tier (empty: the book)",
    ),
)


def _endpoint_ids(raw: str) -> dict[str, str]:
    ids: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, eq, value = part.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise SettingsError(
                f"RUNPOD_ENDPOINT_IDS: {part!r} is not name=id "
                "(write RUNPOD_ENDPOINT_IDS=video=abc123,light=def456)"
            )
        ids[name.strip()] = value.strip()
    return ids


def _price(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(
            f"GPU_PRICE_PER_SECOND must be USD per GPU-second like 0.00034, not {raw!r}"
        ) from None
    if not value > 0 or value != value or value == float("inf"):
        raise SettingsError(f"GPU_PRICE_PER_SECOND must be a positive number, not {raw!r}")
    return value


@dataclass(frozen=True)
class OpsSettings:
    """What the operator CLI was configured with. ``environ`` is kept for the specs'
    ``{ from_env = "NAME" }`` references, which may name any variable."""

    runpod_api_key: str = ""
    runpod_endpoint_id: str = ""
    runpod_endpoint_ids: dict[str, str] = field(default_factory=dict)
    runpod_endpoint_base_url: str = DEFAULT_JOB_URL
    runpod_rest_url: str = ""
    runpod_graphql_url: str = ""
    hf_endpoint: str = DEFAULT_HF_ENDPOINT
    hf_token: str = ""
    endpoints_dir: Path = DEFAULT_ENDPOINTS_DIR
    gpu_price_per_second: float | None = None
    database_url: str = ""
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:  # the key and the token never reach a log through repr
        return (
            f"OpsSettings(base_url={self.runpod_endpoint_base_url!r}, "
            f"rest_url={self.runpod_rest_url!r}, endpoints_dir={str(self.endpoints_dir)!r})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OpsSettings:
        """Read every knob from ``environ`` (default: this process's environment)."""
        env = dict(os.environ if environ is None else environ)
        raw = {k.env: (env.get(k.env) or k.default).strip() for k in KNOBS}
        return cls(
            runpod_api_key=raw["RUNPOD_API_KEY"],
            runpod_endpoint_id=raw["RUNPOD_ENDPOINT_ID"],
            runpod_endpoint_ids=_endpoint_ids(raw["RUNPOD_ENDPOINT_IDS"]),
            runpod_endpoint_base_url=raw["RUNPOD_ENDPOINT_BASE_URL"],
            runpod_rest_url=raw["RUNPOD_REST_URL"],
            runpod_graphql_url=raw["RUNPOD_GRAPHQL_URL"],
            hf_endpoint=raw["HF_ENDPOINT"].rstrip("/"),
            hf_token=raw["HF_TOKEN"],
            endpoints_dir=Path(raw["DEPLOY_ENDPOINTS_DIR"]),
            gpu_price_per_second=_price(raw["GPU_PRICE_PER_SECOND"]),
            database_url=raw["DATABASE_URL"],
            environ=env,
        )

    def api_key(self) -> str:
        """The RunPod API key, or a clear error saying how to give it."""
        if not self.runpod_api_key:
            raise SettingsError(
                "RUNPOD_API_KEY is not set: export it (it is never taken as a flag)"
            )
        return self.runpod_api_key
