"""Typed settings for the web app and the Celery tasks, read once from the environment.

Database tables: run ``flask --app app db-upgrade`` (or ``python -m app.migrate``) before
starting the web server, worker or beat; both apply the Alembic migrations in
``app/migrations`` to ``DATABASE_URL`` and are safe to run repeatedly.

Every knob has a default for development; ``SECRET_KEY`` and ``ADMIN_PASSWORD`` have none
outside development/test, and placeholder secrets are refused there (see ``Settings.check``).
The README section "Configuration" lists every variable.

``STATUS_BUDGET_PER_10S`` defaults to 500, a quarter of RunPod's 2000 ``/status`` per 10 s:
the limit is the endpoint's, shared with every other client of it (ops commands, a second
deployment, dashboards), so this app keeps well clear of it, and at 500 it still polls
10,000 jobs in flight at least every ~6 minutes (``app.lifecycle.polling.effective_cap``).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from app.endpoints.routing import Fleet, RoutingError, build_fleet
from app.lifecycle.status_budget import WINDOWS_PER_BUDGET
from app.pipelines import declared, undeclared
from deploy.runpod.prices import PriceError, price_per_second
from deploy.runpod.vocabulary import DEFAULT_JOB_URL

REPO = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("development", "production", "test")
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changethis",
        "change-me",
        "changeme",
        "secret",
        "dev",
        "development",
        "password",
        "administrator",
        "adminpassword",
        "password1234",
        "letmein12345",
        "123456789012",
    }
)
DEV_SECRET_KEY = "dev-only-not-secret"  # noqa: S105 - refused outside development/test
DEV_ADMIN_PASSWORD = "admin"  # noqa: S105 - refused outside development/test
MIN_ADMIN_PASSWORD = 12
# Estimated bits (``guess_bits``) a production secret needs. ADMIN_PASSWORD is guessed
# online through a rate-limited form; SECRET_KEY offline against a signed cookie or URL.
MIN_ADMIN_PASSWORD_BITS = 40
MIN_SECRET_KEY_BITS = 64
# Below this a one-second window of app.lifecycle.status_budget could not hold one request.
MIN_STATUS_BUDGET = WINDOWS_PER_BUDGET


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable and the fix."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean: use true or false")


def _number(name: str, raw: str, kind: type, minimum: float | None = None) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
    return value


def guess_bits(secret: str) -> float:
    """A rough estimate of how many bits of guessing ``secret`` takes: the entropy per
    character of its own character mix, times the characters a guesser could not predict
    from the one before (a repeat or a neighbour, as in "aaaa", "abcd" or "4321", adds
    none). "aaaaaaaaaaaa" scores 0, "abcdefghijkl" 4, ``secrets.token_urlsafe(18)`` 70+."""
    if not secret:
        return 0.0
    n = len(secret)
    per_char = -sum(c / n * math.log2(c / n) for c in Counter(secret).values())
    pairs = zip(secret, secret[1:], strict=False)
    surprising = 1 + sum(1 for a, b in pairs if abs(ord(b) - ord(a)) > 1)
    return per_char * surprising


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    """One process's configuration. Build it with ``Settings.from_env()``."""

    app_env: str = "development"
    secret_key: str = field(default=DEV_SECRET_KEY, repr=False)
    database_url: str = f"sqlite:///{REPO}/instance/app.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    runpod_api_key: str = field(default="", repr=False)
    runpod_endpoint_id: str = ""  # one endpoint, named "default", serving every pipeline
    # Several: "video=<id>,light=<id>", each a spec in ENDPOINT_SPECS_DIR naming its
    # pipelines (app/endpoints/routing.py).
    runpod_endpoints: str = ""
    endpoint_specs_dir: str = f"{REPO}/deploy/endpoints"
    runpod_endpoint_base_url: str = DEFAULT_JOB_URL
    # RunPod's management APIs (REST v2, GraphQL); set only to point at stand-ins for them.
    runpod_rest_url: str = ""
    runpod_graphql_url: str = ""
    public_base_url: str = "http://127.0.0.1:5000"
    storage_backend: str = "local"
    storage_dir: str = f"{REPO}/instance/storage"
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    aws_access_key_id: str = field(default="", repr=False)
    aws_secret_access_key: str = field(default="", repr=False)
    aws_default_region: str = "us-east-1"
    admin_password: str = field(default=DEV_ADMIN_PASSWORD, repr=False)
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    sentry_dsn: str = field(default="", repr=False)
    sentry_release: str = ""
    sentry_traces_sample_rate: float = 0.0
    log_level: str = "INFO"
    # USD per GPU-second: the price book's (deploy/runpod/prices.py) for GPU_POOLS, unless
    # GPU_PRICE_PER_SECOND overrides it (0: no override).
    gpu_price_per_second: float = 0.0
    gpu_pools: tuple[str, ...] = ("AMPERE_24",)
    # Spend limits in USD (0: none); ``*_BY_ENDPOINT`` as ``name=usd`` pairs, e.g. video=20.
    budget_usd_per_day: float = 0.0
    budget_usd_per_month: float = 0.0
    budget_usd_per_day_by_endpoint: tuple[str, ...] = ()
    budget_usd_per_month_by_endpoint: tuple[str, ...] = ()
    # The breaker: this many workers crashing within BREAKER_WINDOW_S with no job completing
    # stop jobs going to their endpoint (app/endpoints/breaker.py).
    breaker_crashes: int = 3
    breaker_window_s: float = 600.0
    breaker_scale_to_zero: bool = False
    # A quarter of RunPod's 2000 per 10 s per endpoint (why: the module docstring).
    status_budget_per_10s: int = 500
    use_webhooks: bool = True
    max_upload_bytes: int = 2 * 1024**3
    allowed_upload_types: tuple[str, ...] = ("video/*", "image/*")
    pipelines: tuple[str, ...] = ("echo", "video_enhance", "upscale")
    signed_url_ttl_s: int = 24 * 3600  # inputs must stay readable while the job waits
    execution_timeout_s: int = 600
    job_ttl_s: int = 24 * 3600
    poll_base_s: float = 2.0
    poll_cap_s: float = 60.0
    reconcile_interval_s: float = 60.0
    submit_grace_s: float = 90.0  # longer than the submit task's hard time limit
    unknown_submit_grace_s: float = 120.0
    # Past this, an unknown submit no worker claimed is sent again even if the endpoint is
    # busy: the claim refuses the lost RunPod job if it ever runs (app.lifecycle.claims).
    unknown_submit_max_s: float = 300.0
    endpoint_unreachable_grace_s: float = 600.0
    queue_diagnose_after_s: float = 60.0
    # A job no Celery worker has taken after this long says so on its page (app.taskhealth).
    task_pickup_grace_s: float = 60.0
    retention_days: float = 7.0
    admin_session_hours: float = 12.0
    # Failed admin logins allowed per client IP per 5 minutes (3x that per account).
    login_attempts_per_5min: int = 10
    # Uploads allowed per hour from one client IP without an API token (0: no limit).
    upload_rate_per_hour: int = 60
    # Proxies in front of the app that append to X-Forwarded-For/-Proto (0: none, so those
    # headers are ignored). Per-address limits read the client's address past this many.
    trusted_proxy_count: int = 0
    webhook_base_url: str = ""  # where the endpoint reaches this app; PUBLIC_BASE_URL if empty
    # Issue 20: first retry of a failed webhook delivery to a client, then x3 each time.
    client_webhook_retry_base_s: float = 5.0
    client_webhook_timeout_s: float = 10.0  # for the receiver's answer, once connected
    # Receivers behind a private CA: its PEM bundle (default: the public CAs, certifi's).
    client_webhook_ca_bundle: str = ""
    test_crash_at: str = ""  # APP_ENV=test only: SIGKILL the task at a named point

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``environ`` (default ``os.environ``) and check it."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None:
                continue
            name = f.name.upper()
            default = f.default
            if isinstance(default, bool):
                values[f.name] = _bool(name, raw)
            elif isinstance(default, int):
                values[f.name] = _number(name, raw, int, 0)
            elif isinstance(default, float):
                values[f.name] = _number(name, raw, float, 0)
            elif isinstance(default, tuple):
                values[f.name] = _list(raw)
            else:
                values[f.name] = raw.strip()
        env_name = values.get("app_env", "development")
        if env_name not in ("development", "test"):
            values.setdefault("secret_key", "")
            values.setdefault("admin_password", "")
        settings = cls(**values)
        settings.check()
        return settings

    def replace(self, **changes: Any) -> Settings:
        updated = replace(self, **changes)
        updated.check()
        return updated

    @property
    def development(self) -> bool:
        return self.app_env in ("development", "test")

    @property
    def webhook_root(self) -> str:
        return (self.webhook_base_url or self.public_base_url).rstrip("/")

    def check(self) -> None:
        """Refuse settings the app cannot run with, saying which variable to set."""
        if self.app_env not in ENVIRONMENTS:
            raise SettingsError(f"APP_ENV={self.app_env!r}: use one of {', '.join(ENVIRONMENTS)}")
        if not self.development:
            if self.secret_key.lower() in PLACEHOLDER_SECRETS or self.secret_key == DEV_SECRET_KEY:
                raise SettingsError(
                    "SECRET_KEY is missing or a placeholder: set it to a long random value, "
                    'e.g. python -c "import secrets; print(secrets.token_urlsafe(48))"'
                )
            if len(self.secret_key) < 16:
                raise SettingsError("SECRET_KEY is too short: use at least 16 random characters")
            if guess_bits(self.secret_key) < MIN_SECRET_KEY_BITS:
                raise SettingsError(
                    "SECRET_KEY is too easy to guess (repeated or sequential characters): "
                    'use a long random value, e.g. python -c "import secrets; '
                    'print(secrets.token_urlsafe(48))"'
                )
            if (
                self.admin_password.lower() in PLACEHOLDER_SECRETS
                or self.admin_password == DEV_ADMIN_PASSWORD
            ):
                raise SettingsError("ADMIN_PASSWORD is missing or a placeholder: set a real one")
            if len(self.admin_password) < MIN_ADMIN_PASSWORD:
                raise SettingsError(
                    f"ADMIN_PASSWORD is too short: use at least {MIN_ADMIN_PASSWORD} characters, "
                    'e.g. python -c "import secrets; print(secrets.token_urlsafe(18))"'
                )
            if guess_bits(self.admin_password) < MIN_ADMIN_PASSWORD_BITS:
                raise SettingsError(
                    "ADMIN_PASSWORD is too easy to guess (repeated or sequential characters, "
                    "or too few different ones): use a pass phrase of several words or "
                    'python -c "import secrets; print(secrets.token_urlsafe(18))"'
                )
            if self.test_crash_at:
                raise SettingsError("TEST_CRASH_AT is only honoured with APP_ENV=test")
        if self.storage_backend not in ("local", "s3"):
            raise SettingsError(f"STORAGE_BACKEND={self.storage_backend!r}: use local or s3")
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise SettingsError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        if not self.public_base_url.startswith(("http://", "https://")):
            raise SettingsError(f"PUBLIC_BASE_URL={self.public_base_url!r} must be an http(s) URL")
        if self.status_budget_per_10s < MIN_STATUS_BUDGET:
            raise SettingsError(
                f"STATUS_BUDGET_PER_10S={self.status_budget_per_10s} is too small: use at "
                f"least {MIN_STATUS_BUDGET} (it is handed out per second, budget // "
                f"{WINDOWS_PER_BUDGET} each)"
            )
        if self.poll_cap_s < self.poll_base_s:
            raise SettingsError("POLL_CAP_S must be at least POLL_BASE_S")
        for name in ("budget_usd_per_day_by_endpoint", "budget_usd_per_month_by_endpoint"):
            for pair in getattr(self, name):
                endpoint, _, usd = pair.partition("=")
                try:
                    ok = bool(endpoint.strip()) and float(usd) >= 0
                except ValueError:
                    ok = False
                if not ok:
                    raise SettingsError(
                        f"{name.upper()} has {pair!r}: use name=usd pairs, e.g. video=20,light=5"
                    )
        try:  # every cost, budget and chart is priced with these
            price_per_second(self.gpu_pools, override=self.gpu_price_per_second or None)
        except PriceError as exc:
            raise SettingsError(f"GPU_POOLS={','.join(self.gpu_pools)}: {exc}") from None
        if self.breaker_crashes < 1:
            raise SettingsError("BREAKER_CRASHES must be at least 1")
        if not self.pipelines:
            raise SettingsError("PIPELINES is empty: name at least one pipeline, e.g. echo")
        if undeclared(self.pipelines):
            raise SettingsError(
                f"PIPELINES names {', '.join(undeclared(self.pipelines))}, which no pipeline "
                f"declares; choose from {', '.join(declared())} or add a pipeline "
                "(docs/gpu-worker.md, Add your model)"
            )

        self._check_fleet()

    def _check_fleet(self) -> None:
        try:
            self.__dict__["fleet"] = build_fleet(
                pairs=self.runpod_endpoints,
                single_id=self.runpod_endpoint_id,
                offered=self.pipelines,
                specs_dir=Path(self.endpoint_specs_dir),
            )
        except RoutingError as exc:
            raise SettingsError(str(exc)) from None

    @cached_property
    def fleet(self) -> Fleet:
        """The endpoints and the pipelines each serves (built, and checked, by ``check``)."""
        self._check_fleet()
        return self.__dict__["fleet"]

    @property
    def endpoint_configured(self) -> bool:
        """An API key and at least one endpoint id: jobs can go somewhere."""
        return bool(self.runpod_api_key and any(e.endpoint_id for e in self.fleet.endpoints))

    def configured(self, endpoint: str) -> bool:
        """Jobs of ``endpoint`` (a name) can be sent: an API key and that endpoint's id."""
        return bool(self.runpod_api_key and self.fleet.get(endpoint).endpoint_id)
