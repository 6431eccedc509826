"""Service configuration, read once from the environment with pydantic-settings (README "API service" lists every
variable)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO = Path(__file__).resolve().parents[1]
# The farm-wide settings' one default each (roles/farm/defaults/main.yml, which the playbooks read): a Mini without its
# own claw_max_per_mini / claw_base_port has these, in the service as in an operator's ansible-playbook.
FARM_DEFAULTS_FILE = REPO / "roles" / "farm" / "defaults" / "main.yml"


def farm_default(name: str) -> int:
    """The farm role's default of the integer setting ``name`` (``claw_max_per_mini``, ``claw_base_port``).

    Raises KeyError for a setting the farm role does not define; ValueError when its default is not a plain integer
    (a template).
    """
    return int(yaml.safe_load(FARM_DEFAULTS_FILE.read_text())[name])


DEFAULT_MAX_CLAWS = farm_default("claw_max_per_mini")
DEFAULT_BASE_PORT = farm_default("claw_base_port")


@dataclass
class Settings:
    """Shapes and defaults:

    - ``tokens``: accepted bearer tokens (``CLAWFARM_API_TOKENS``, comma separated, or one per line in the file
      ``CLAWFARM_API_TOKENS_FILE``). Required: the service refuses to start without one.
    - ``database_url``: SQLAlchemy URL (``CLAWFARM_API_DATABASE_URL``), default SQLite in the state dir.
    - ``state_dir``: ``CLAWFARM_API_STATE_DIR`` (default ``<repo>/.cache/api``), holds the SQLite file.
    - ``run_dir``: parent of the private per-job run directories (0700, deleted when the job ends),
      ``CLAWFARM_API_RUN_DIR`` (default ``<state_dir>/run``; a tmpfs such as /run/clawfarm-api is better).
    - ``inventory``: inventory path for the playbooks (``CLAWFARM_API_INVENTORY``, default ``<repo>/inventory``).
    - ``farm_vars``: an operator-managed vars file (0600 or vaulted) passed to every playbook with ``-e @file``
      (Cloudflare and R2 credentials); ``CLAWFARM_API_FARM_VARS``.
    - ``playbook_dir``: where the job kinds' playbooks are (``CLAWFARM_API_PLAYBOOK_DIR``, default ``<repo>/playbooks``).
    - ``workers``: jobs this replica runs at once across Minis (``CLAWFARM_API_WORKERS``, default 4).
    - ``lease_seconds``: a running job's lease, renewed by its replica every third of it; a job whose replica stops
      renewing it ends ``interrupted`` once it expires. Also the scheduler leader's lease and a replica's heartbeat
      (``CLAWFARM_API_LEASE_SECONDS``, default 30). Replicas' clocks must agree (NTP) to well within it.
    - ``webhook_url`` / ``webhook_secret``: global callback for final job states, signed with HMAC-SHA256
      (``CLAWFARM_API_WEBHOOK_URL``, ``CLAWFARM_API_WEBHOOK_SECRET``). The secret is required as soon as any
      webhook can be sent (a webhook URL or callback hosts are configured): nothing is ever signed with an empty key.
      The operator's ``webhook_url`` is trusted as configured (it may live on a private network).
    - ``callback_hosts``: host names a request's ``callback_url`` may name (``CLAWFARM_API_CALLBACK_HOSTS``, comma
      separated, case-insensitive; default none, so ``callback_url`` is refused unless it names the host of
      ``webhook_url``). Even then every address the host resolves to must be global (no loopback, private,
      link-local, multicast or reserved address), checked when the request comes in and again at each delivery.
    - ``openapi``: ``CLAWFARM_API_OPENAPI`` = ``off`` (default: no ``/openapi.json``, no ``/docs``) or ``token``
      (``/openapi.json`` served behind the bearer token; ``/docs`` stays off).
    - ``max_body_bytes``: larger request bodies get 413, counted as the bytes arrive (chunked bodies too)
      (``CLAWFARM_API_MAX_BODY_BYTES``, default 65536).
    - ``poll_cache_seconds``: how long an answer of ``GET /v1/claws/{id}`` or ``GET /v1/jobs/{id}`` may be reused
      when nothing changed in this replica (:mod:`api.pollcache`; a commit of this replica drops the answers it
      changes at once, so the bound matters only for what other replicas write) (``CLAWFARM_API_POLL_CACHE_SECONDS``;
      default 10 on PostgreSQL, where the replicas also tell each other what they changed with ``NOTIFY``, 30 on SQLite,
      whose single replica writes everything itself; 0 = off).
    - ``job_timeout``: seconds before a playbook is killed (``CLAWFARM_API_JOB_TIMEOUT``, default 3600).
    - ``health_interval``: seconds between fleet health samples (``CLAWFARM_API_HEALTH_INTERVAL``, default 60; 0 = off).
    - ``backup_schedule``: ``HH:MM`` Mini-local, ``every:<seconds>`` or ``off`` (``CLAWFARM_API_BACKUP_SCHEDULE``, default 02:00).
    - ``discord_webhook_url``: alerts go there (``CLAWFARM_API_DISCORD_WEBHOOK_URL``; a secret, never logged).
    - ``alert_thresholds``: ``CLAWFARM_API_ALERT_CPU_PERCENT`` (80), ``_CPU_FOR_SECONDS`` (300), ``_MEMORY_PERCENT`` (90),
      ``_DISK_PERCENT`` (85), ``_HEARTBEAT_SECONDS`` (180), ``_BACKUP_MAX_AGE_SECONDS`` (86400).
    """

    tokens: list[str]
    database_url: str
    state_dir: Path
    run_dir: Path
    inventory: Path
    farm_vars: Path | None = None
    workers: int = 4
    playbook_dir: Path = REPO / "playbooks"
    lease_seconds: float = 30
    webhook_url: str | None = None
    webhook_secret: str | None = None
    callback_hosts: list[str] = field(default_factory=list)
    openapi: str = "off"
    max_body_bytes: int = 65536
    job_timeout: int = 3600
    health_interval: float = 60
    backup_schedule: str = "02:00"
    discord_webhook_url: str | None = None
    poll_cache_seconds: float | None = None
    alert_thresholds: dict = field(default_factory=dict)
    webhook_delays: list[float] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])


PREFIX = "CLAWFARM_API_"
THRESHOLDS = ("cpu_percent", "cpu_for_seconds", "memory_percent", "disk_percent", "heartbeat_seconds", "backup_max_age_seconds")


class EnvSettings(BaseSettings):
    """The environment as pydantic-settings reads it (``CLAWFARM_API_<NAME>``; an empty variable counts as unset);
    :func:`load_settings` turns it into :class:`Settings`. Types and ranges are checked here."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", env_ignore_empty=True)

    tokens: str = ""
    tokens_file: Path | None = None
    database_url: str | None = None
    state_dir: Path = REPO / ".cache" / "api"
    run_dir: Path | None = None
    inventory: Path = REPO / "inventory"
    farm_vars: Path | None = None
    playbook_dir: Path = REPO / "playbooks"
    workers: int = Field(4, ge=1)
    lease_seconds: float = Field(30, gt=0)
    webhook_url: str | None = None
    webhook_secret: str | None = None
    callback_hosts: str = ""
    openapi: str = "off"
    max_body_bytes: int = Field(65536, ge=1)
    job_timeout: int = Field(3600, ge=1)
    poll_cache_seconds: float | None = Field(None, ge=0, le=300)
    health_interval: float = Field(60, ge=0)
    backup_schedule: str = "02:00"
    discord_webhook_url: str | None = None
    alert_cpu_percent: float | None = None
    alert_cpu_for_seconds: float | None = None
    alert_memory_percent: float | None = None
    alert_disk_percent: float | None = None
    alert_heartbeat_seconds: float | None = None
    alert_backup_max_age_seconds: float | None = None

    @classmethod
    def from_mapping(cls, environ) -> EnvSettings:
        """Read ``environ`` (a mapping of variables) instead of the process environment."""
        values = {name[len(PREFIX):].lower(): value for name, value in environ.items() if name.startswith(PREFIX) and value != ""}

        class FromMapping(cls):
            @classmethod
            def settings_customise_sources(cls, settings_cls, init_settings, **_others):
                return (init_settings,)

        return FromMapping(**values)


def load_settings(environ=None) -> Settings:
    """Read the settings (through :class:`EnvSettings`); the token variables are removed from the process
    environment afterwards, so they never reach a playbook's environment (ansible-runner copies ``os.environ`` into
    the child).

    Raises:
        RuntimeError: no bearer token configured; webhooks on without ``CLAWFARM_API_WEBHOOK_SECRET``; a bad
            ``CLAWFARM_API_OPENAPI``; a variable of the wrong type or range (named, its value never shown).
    """
    try:
        env = EnvSettings() if environ is None else EnvSettings.from_mapping(environ)
    except ValidationError as exc:
        problems = "; ".join(f"{PREFIX}{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors(include_input=False))
        raise RuntimeError(f"bad settings: {problems}") from None
    tokens = [t.strip() for t in env.tokens.split(",") if t.strip()]
    if env.tokens_file:
        tokens += [line.strip() for line in env.tokens_file.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not tokens:
        raise RuntimeError("no API token: set CLAWFARM_API_TOKENS or CLAWFARM_API_TOKENS_FILE")
    thresholds = {key: getattr(env, f"alert_{key}") for key in THRESHOLDS if getattr(env, f"alert_{key}") is not None}
    callback_hosts = sorted({h.strip().lower().rstrip(".") for h in env.callback_hosts.split(",") if h.strip()})
    if (env.webhook_url or callback_hosts) and not env.webhook_secret:
        raise RuntimeError("webhooks are on (CLAWFARM_API_WEBHOOK_URL or CLAWFARM_API_CALLBACK_HOSTS) but CLAWFARM_API_WEBHOOK_SECRET "
                           "is not set: set it to a long random string the receiver uses to check X-Clawfarm-Signature")
    openapi = env.openapi.strip().lower() or "off"
    if openapi not in ("off", "token"):
        raise RuntimeError(f"CLAWFARM_API_OPENAPI must be 'off' or 'token', got {openapi[:32]!r}")
    if environ is None:  # read above; gone before any playbook inherits the environment
        for name in ("CLAWFARM_API_TOKENS", "CLAWFARM_API_WEBHOOK_SECRET", "CLAWFARM_API_DISCORD_WEBHOOK_URL"):
            os.environ.pop(name, None)
    return Settings(
        tokens=tokens,
        database_url=env.database_url or f"sqlite:///{env.state_dir / 'clawfarm-api.sqlite'}",
        state_dir=env.state_dir,
        run_dir=env.run_dir or env.state_dir / "run",
        inventory=env.inventory,
        farm_vars=env.farm_vars,
        workers=env.workers,
        playbook_dir=env.playbook_dir,
        lease_seconds=env.lease_seconds,
        webhook_url=env.webhook_url,
        webhook_secret=env.webhook_secret,
        callback_hosts=callback_hosts,
        openapi=openapi,
        max_body_bytes=env.max_body_bytes,
        job_timeout=env.job_timeout,
        health_interval=env.health_interval,
        backup_schedule=env.backup_schedule,
        discord_webhook_url=env.discord_webhook_url,
        poll_cache_seconds=env.poll_cache_seconds,
        alert_thresholds=thresholds,
    )
