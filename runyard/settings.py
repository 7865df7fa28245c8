"""Operator settings, read from the environment (prefix ``RUNYARD_``) by every command.

Temporal, Anthropic and E2B keep their own conventional variable names
(``TEMPORAL_ADDRESS``, ``ANTHROPIC_API_KEY`` …) so existing deployments need no renaming.
"""

from __future__ import annotations

import hashlib
import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # Errors never quote the value given: it may be a key (RUNYARD_PAYLOAD_KEYS) or a token.
    model_config = SettingsConfigDict(
        env_prefix="RUNYARD_", extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Path(".runyard")
    database_url: str | None = None

    temporal_address: str = Field(
        "localhost:7233",
        validation_alias=AliasChoices("TEMPORAL_ADDRESS", "RUNYARD_TEMPORAL_ADDRESS"),
    )
    temporal_namespace: str = Field(
        "default",
        validation_alias=AliasChoices("TEMPORAL_NAMESPACE", "RUNYARD_TEMPORAL_NAMESPACE"),
    )
    task_queue: str = "runyard"
    # This worker host's name: its local sandboxes' activities go to the task queue
    # "<task_queue>@<host_name>", so a run's tool calls land on the host holding its
    # sandbox. Default: the machine's host name and a short hash of the resolved data dir
    # (``default_host_name``), so two workers with their own data dirs on one machine
    # never take each other's tool calls, and workers sharing a data dir share the name.
    # Set it to a name unique per data dir.
    host_name: str = Field(
        default_factory=lambda data: default_host_name(data.get("data_dir", Path(".runyard"))),
        min_length=1,
        max_length=200,
    )
    # A host's activity not picked up this long means the host is gone: its sandboxes are
    # rebuilt elsewhere (sandbox.lost).
    host_lost_seconds: int = Field(default=60, ge=5)

    anthropic_api_key: str | None = Field(
        None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "RUNYARD_ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "RUNYARD_ANTHROPIC_BASE_URL")
    )
    e2b_api_key: str | None = Field(
        None, validation_alias=AliasChoices("E2B_API_KEY", "RUNYARD_E2B_API_KEY")
    )
    # Where the E2B SDK sends its calls: the domain (api.<domain>, <port>-<id>.<domain>),
    # or for a self-hosted or test E2B the API's URL and the sandboxes' envd URL.
    e2b_domain: str | None = Field(
        None, validation_alias=AliasChoices("E2B_DOMAIN", "RUNYARD_E2B_DOMAIN")
    )
    e2b_api_url: str | None = Field(
        None, validation_alias=AliasChoices("E2B_API_URL", "RUNYARD_E2B_API_URL")
    )
    e2b_sandbox_url: str | None = Field(
        None, validation_alias=AliasChoices("E2B_SANDBOX_URL", "RUNYARD_E2B_SANDBOX_URL")
    )
    # An E2B sandbox left without a call this long is paused by E2B (each call renews it).
    e2b_sandbox_timeout_seconds: int = Field(default=3600, ge=60, le=86_400)

    # Guardrail defaults and bounds.
    default_max_turns: int = Field(default=100, ge=1, le=1000)
    default_max_cost_usd: float = Field(default=5.0, gt=0)
    default_timeout_seconds: int = Field(default=1800, ge=1)
    # The contract's lower bound for timeoutSeconds is 30; tests lower it to exercise timeouts.
    min_timeout_seconds: int = Field(default=30, ge=1)
    queued_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    input_wait_seconds: int = Field(default=24 * 3600, ge=1)

    rate_limit_per_minute: int = Field(default=200, ge=1)
    # Signs connection tokens (and signed URLs); generated into the data dir when unset.
    secret_key: SecretStr | None = None
    # How long an API process trusts a key it has checked; a revoked key works this long.
    api_key_cache_seconds: float = Field(default=10.0, ge=0)
    max_active_runs: int = Field(default=10, ge=1)
    # Schedules an organization may have (409 SCHEDULE_LIMIT_EXCEEDED past it).
    max_schedules_per_org: int = Field(default=100, ge=0)

    # Sandbox isolation is required: "auto" and "on" both need bubblewrap (without it runs
    # fail SANDBOX_UNAVAILABLE); "off" runs agent code unisolated, announced at start.
    sandbox_bwrap: Literal["auto", "on", "off"] = "auto"
    # The per-sandbox disk limit: "auto" loop-mounts an image of the size's diskMi where
    # the worker can (root, loop devices), "loop" requires it, "off" never does.
    sandbox_disk: Literal["auto", "loop", "off"] = "auto"
    # Where local workspaces live (default: <data dir>/sandboxes). A tmpfs makes clones of
    # big repositories much faster on disks slow at creating files, at the cost of RAM.
    sandbox_dir: Path | None = None
    # An operator gate: a template's `network: "full"` gets network access only when this
    # is on; when it is off such a run fails SANDBOX_UNAVAILABLE at provision. A template
    # with `network: "none"` never gets network, whatever this says.
    sandbox_network: bool = False
    # How long a template's setupScript may run before the run fails SANDBOX_SETUP_FAILED.
    setup_timeout_seconds: int = Field(default=900, ge=1, le=6 * 3600)
    # Every this many seconds the reaper destroys sandboxes whose run is over (or unknown).
    sandbox_reap_seconds: int = Field(default=300, ge=10)
    tool_timeout_seconds: int = Field(default=600, ge=1)
    # A run continues as new once its workflow history holds this many events (Temporal
    # refuses a history past 51,200); tests lower it to force it after a few turns.
    continue_as_new_events: int = Field(default=10_000, ge=20, le=40_000)
    git_base_url: str = "https://github.com"
    # Repositories on the worker's disk (a path or file://) are refused unless this is on
    # (runyard dev turns it on). The clone copies them, never hardlinks.
    allow_local_repos: bool = False
    # Where local repositories may be (absolute paths, ":"-separated like PATH). Unset: a
    # local repository may be anywhere the worker can read, and is read-only to runs (no
    # push is forwarded into it). Set: only repositories under these directories are
    # accepted, and a run's pushes are forwarded into them, as new branches under
    # local_push_prefix only.
    local_repo_roots: str = ""
    # The branch namespace of pushes forwarded into a local repository (with roots set).
    local_push_prefix: str = Field(default="runyard/", min_length=1, max_length=100)
    # Authenticates clone and push over https; never enters a sandbox.
    git_token: str | None = None
    github_api_url: str = "https://api.github.com"
    github_token: str | None = None  # default: git_token
    # The longest one git command may run (the clone, a forwarded push, a PR's push).
    git_timeout_seconds: float = 600
    # The most a relayed push may carry (the bundle read out of the sandbox).
    git_push_max_bytes: int = 256 * 1024 * 1024
    # The most a run's pushes may add to Runyard's mirror of its repository (on the worker's
    # disk, outside the sandbox's diskMi; a push is fetched there, forwarded or refused).
    git_run_push_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    # The most branches one push (one bash command, one final sweep) forwards upstream, and
    # the most distinct branches a run forwards in all; the rest are refused, saying so.
    git_max_branches_per_push: int = Field(default=10, ge=1, le=1000)
    git_max_branches_per_run: int = Field(default=10, ge=1, le=1000)
    # Artifacts: a local directory in the data dir, or s3://bucket/prefix.
    artifacts_url: str | None = None
    artifact_max_bytes: int = 100 * 1024 * 1024

    # Events older than this are purged by the worker; a cursor into them gets 410.
    event_retention_days: float = Field(default=30, gt=0)
    sse_ping_seconds: float = Field(default=15, gt=0)
    # Event streams (SSE) one API process holds open at once, per connection token (all
    # of a run's tokens together), per API key (with the tokens it asked for) and per
    # organization; past one, 429 RATE_LIMIT_EXCEEDED. Per process: see api/streams.py.
    max_streams_per_token: int = Field(default=20, ge=1)
    max_streams_per_key: int = Field(default=100, ge=1)
    max_streams_per_org: int = Field(default=200, ge=1)

    # Callbacks and webhooks may reach loopback and private addresses (runyard dev sets it).
    allow_private_callbacks: bool = False
    # Seconds before each delivery attempt (the first is usually 0).
    webhook_retry_schedule: str = "0,5,300,1800,7200,18000,36000,50400,72000,86400"
    max_webhooks_per_org: int = 25
    # Prometheus metrics. The API serves /metrics on its own port unless metrics_port is
    # set (then there only, and /metrics on the API port is 404). The worker serves its
    # metrics on worker_metrics_port (off when unset) and the Temporal SDK's on the next
    # port. Both bind metrics_host.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65534)
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_json: bool = False
    # The LangGraph Platform routes under /lg (docs/langgraph.md): off unless "on".
    langgraph_compat: bool = False
    # Browser origins allowed to call /lg (exact matches, comma-separated): CORS.
    langgraph_cors_origins: str = ""

    # Encrypted workflow history (runyard/encryption.py, api/codec_server.py): "id:<base64
    # key>,…", the first encrypts every Temporal payload and failure message, all decrypt.
    # Unset: payloads are plain JSON, as before.
    payload_keys: SecretStr | None = None
    # The codec server (/codec/decode, with payload_keys): the browser origins (exact,
    # comma-separated) of the Temporal UI that may call it, whether /codec/encode is
    # served, and whether a caller on a loopback address needs no credential (runyard dev).
    codec_origins: str = ""
    codec_encode: bool = False
    codec_loopback_open: bool = False
    # The Temporal UI's passed-through login token (api/codec_tokens.py): its identity
    # provider's JSON Web Key Set, and the issuer and audience its tokens must carry.
    codec_jwks_url: str | None = None
    codec_token_issuer: str | None = None
    codec_token_audience: str | None = None
    # How long a stopping worker (SIGTERM, SIGINT) lets its running activities finish
    # before it cancels them (Temporal's graceful shutdown timeout). The outbox pump's
    # activity never ends by itself, so every stop waits this long.
    worker_shutdown_seconds: float = Field(default=5, ge=0)

    # Checkpoints (issue 26): the most bytes one checkpoint's bundle may take (a larger one
    # is recorded but not kept, so its code cannot be restored), the most bytes of each of
    # its diffs that are kept, and how long a checkpoint can be forked from or diffed.
    checkpoint_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    checkpoint_diff_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1)
    checkpoint_retention_days: float = Field(default=30, gt=0)

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            delays = [float(x) for x in value.split(",") if x.strip()]
        except ValueError:
            delays = []
        if not delays or any(d < 0 for d in delays):
            raise ValueError(
                "RUNYARD_WEBHOOK_RETRY_SCHEDULE needs non-negative seconds, comma-separated "
                f"(got {value!r})"
            )
        return value

    @field_validator("sandbox_bwrap")
    @classmethod
    def _bwrap(cls, value: str) -> str:
        if value not in ("auto", "on", "off"):
            raise ValueError(f"RUNYARD_SANDBOX_BWRAP must be auto, on or off (got {value!r})")
        return value

    @field_validator("local_repo_roots")
    @classmethod
    def _roots(cls, value: str) -> str:
        if any(not p.startswith("/") for p in value.split(":") if p.strip()):
            raise ValueError(
                f"RUNYARD_LOCAL_REPO_ROOTS needs absolute paths, ':'-separated (got {value!r})"
            )
        return value

    @field_validator("local_push_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.endswith("/") or value.startswith(("/", "-")) or ".." in value:
            raise ValueError(
                "RUNYARD_LOCAL_PUSH_PREFIX must be a branch namespace ending in '/' "
                f"(got {value!r})"
            )
        return value

    @field_validator("payload_keys")
    @classmethod
    def _payload_keys(cls, value: SecretStr | None) -> SecretStr | None:
        from runyard.encryption import PayloadKeys

        if value is not None:
            PayloadKeys.parse(value.get_secret_value())  # raises PayloadKeyError (ValueError)
        return value

    @field_validator("codec_origins")
    @classmethod
    def _codec_origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip()):
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
                raise ValueError(
                    "RUNYARD_CODEC_ORIGINS needs exact origins like https://temporal.example.com"
                    f" (scheme and host, no path), comma-separated (got {origin!r})"
                )
        return value

    @model_validator(mode="after")
    def _codec_token(self) -> Settings:
        if self.codec_jwks_url and not (self.codec_token_issuer and self.codec_token_audience):
            raise ValueError(
                "RUNYARD_CODEC_JWKS_URL needs RUNYARD_CODEC_TOKEN_ISSUER and "
                "RUNYARD_CODEC_TOKEN_AUDIENCE: the UI's tokens are checked against both"
            )
        if self.codec_jwks_url and not self.codec_jwks_url.startswith(("https://", "http://")):
            raise ValueError("RUNYARD_CODEC_JWKS_URL must be an http(s) URL")
        return self

    @property
    def local_roots(self) -> list[Path]:
        """``local_repo_roots`` as resolved directories (symlinks followed)."""
        return [Path(p.strip()).resolve() for p in self.local_repo_roots.split(":") if p.strip()]

    @property
    def webhook_retry_delays(self) -> list[float]:
        """Seconds before each delivery attempt."""
        return [float(x) for x in self.webhook_retry_schedule.split(",") if x.strip()]

    @property
    def db_url(self) -> str:
        """The SQLAlchemy async URL of the store."""
        return async_store_url(
            self.database_url or f"sqlite:///{self.data_dir.resolve() / 'runyard.db'}"
        )

    @property
    def pr_token(self) -> str | None:
        return self.github_token or self.git_token

    @property
    def host_task_queue(self) -> str:
        """The task queue of this host's sandbox activities."""
        return f"{self.task_queue}@{self.host_name}"

    @property
    def sandboxes_dir(self) -> Path:
        return self.sandbox_dir or self.data_dir.resolve() / "sandboxes"


def default_host_name(data_dir: Path) -> str:
    """``<machine host name>-<8 hex digits of the resolved data dir's path>``: the sandboxes
    of a data dir are on this machine's disk, so the pair names where they are."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def async_store_url(url: str) -> str:
    """A store URL as given (``sqlite://…``, ``postgres[ql]://…``) with the async driver
    Runyard's processes use (aiosqlite, psycopg); a URL naming its driver is kept."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        url = "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    return url
