"""Request and response models of the API. Request fields are checked by the collection's own validators
(``plugins/module_utils/_claw.py`` through :mod:`api.validation`), so the API and the collection refuse the same
input."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator

from .config import DEFAULT_BASE_PORT, DEFAULT_MAX_CLAWS
from .validation import check_env, check_env_change, check_env_names, claw, mini

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
MINI_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


# ---- request and response models ------------------------------------------------------------------------------

EnvValues = dict[str, Annotated[str, Field(max_length=8192)]]
CALLBACK_DOC = ("Receives the final job state (HMAC-signed); its host must be allowed by CLAWFARM_API_CALLBACK_HOSTS "
                "(or be the configured webhook's) and resolve to public addresses only")


def _env(value: dict | None) -> dict | None:
    if value is None:
        return None
    if len(value) > 100:
        raise ValueError("more than 100 entries")
    return check_env(value)  # the collection's validate_env: names, reserved names, newlines, quoting


def _token(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        claw.validate_token(value.get_secret_value())
    return value


class ProvisionRequest(BaseModel):
    """Provision a claw. ``env`` holds the claw's secrets and settings (values never stored or shown); omitted, an
    existing claw keeps its env, given (even ``{}``), it replaces the claw's env."""
    model_config = ConfigDict(extra="forbid")
    claw_id: str = Field(pattern=UUID_PATTERN, description="The claw's UUID")
    mini: str | None = Field(None, pattern=MINI_PATTERN, description="Inventory name; placed on the least-loaded active Mini when absent")
    gateway_token: SecretStr | None = Field(None, min_length=32, max_length=512,
                                            description="Gateway token ([A-Za-z0-9._~+/=-], 32+); generated on the control node when absent")
    env: EnvValues | None = Field(None, description="Environment of the claw (API keys, model ids); replaces the current env when given")
    restore: bool = Field(False, description="Restore the newest archive after provisioning (re-subscribe)")
    callback_url: HttpUrl | None = Field(None, description=CALLBACK_DOC)

    @field_validator("claw_id")
    @classmethod
    def _claw_id(cls, value: str) -> str:
        return claw.validate_claw_id(value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict | None) -> dict | None:
        return _env(value)

    @field_validator("gateway_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        return _token(value)


class ConfigureRequest(BaseModel):
    """Change a claw's settings in place (``playbooks/configure.yml``): set or remove single env entries and/or
    replace the gateway token; the gateway restarts, the claw stays where it is. At least one field."""
    model_config = ConfigDict(extra="forbid")
    env_set: EnvValues | None = Field(None, description="Env entries to add or overwrite (values never stored or shown)")
    env_unset: list[Annotated[str, Field(max_length=256)]] | None = Field(None, max_length=100, description="Env names to remove")
    gateway_token: SecretStr | None = Field(None, min_length=32, max_length=512, description="New gateway token ([A-Za-z0-9._~+/=-], 32+)")
    callback_url: HttpUrl | None = Field(None, description=CALLBACK_DOC)

    @field_validator("env_set")
    @classmethod
    def _env_set(cls, value: dict | None) -> dict | None:
        return _env(value)

    @field_validator("env_unset")
    @classmethod
    def _env_unset(cls, value: list | None) -> list | None:
        return None if value is None else check_env_names(value)

    @field_validator("gateway_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        return _token(value)

    @model_validator(mode="after")
    def _something(self):
        if not (self.env_set or self.env_unset or self.gateway_token):
            raise ValueError("give at least one of env_set, env_unset, gateway_token")
        check_env_change(self.env_set, self.env_unset)  # a name both set and unset
        return self


class ActionRequest(BaseModel):
    """Options of a claw action; all optional."""
    model_config = ConfigDict(extra="forbid")
    mini: str | None = Field(None, pattern=MINI_PATTERN, description="The claw's Mini, when the service does not know it yet")
    key: str | None = Field(None, pattern=r"^(backups|archives)/\d{8}T\d{6}Z\.tar\.zst$", description="restore: archive key (default newest)")
    target: str | None = Field(None, pattern=MINI_PATTERN, description="migrate: the target Mini")
    callback_url: HttpUrl | None = Field(None, description=CALLBACK_DOC)


class DrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    callback_url: HttpUrl | None = Field(None, description=CALLBACK_DOC)


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    claw_id: str | None = None
    mini: str | None = None
    params: dict = {}
    result: dict | None = None
    error: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    webhook_status: str | None = None
    replica: str | None = Field(None, description="The API replica that ran (or runs) the job")


class ClawOut(BaseModel):
    claw_id: str
    present: bool
    mini: str | None = None
    record: dict = {}
    updated_at: str | None = None
    age_seconds: float | None = None
    last_job: JobOut | None = None
    health: dict | None = None
    refresh_job: str | None = None


class ClawSummary(BaseModel):
    claw_id: str
    present: bool
    mini: str | None = None
    record: dict = {}
    updated_at: str | None = None


class ClawPage(BaseModel):
    """One page of claws, by claw id; pass ``next`` as ``after`` for the following page (null: the last page)."""
    items: list[ClawSummary]
    next: str | None = None


class Route(BaseModel):
    """A tunnel route of the Mini: the claw's public hostname to its gateway's loopback port."""
    hostname: str
    service: str
    claw_id: str


class MiniPatch(BaseModel):
    """Change a Mini's status and/or capacity. They override the inventory's ``mini_status`` /
    ``claw_max_per_mini`` for placement, the schedules and every playbook the service runs. At least one field."""
    model_config = ConfigDict(extra="forbid")
    status: Literal["active", "draining", "offline", "maintenance"] | None = Field(
        None, description="active: takes claws; draining: keeps its claws, takes no new ones; offline/maintenance: no jobs scheduled")
    max_claws: int | None = Field(None, ge=0, le=1000, description="Claws the Mini may hold")

    @model_validator(mode="after")
    def _something(self):
        if self.status is None and self.max_claws is None:
            raise ValueError("give status and/or max_claws")
        return self


class MiniCreate(BaseModel):
    """Register a Mini (``POST /v1/minis``); checked by the collection's ``module_utils/_mini.py`` (the inventory
    plugin reads the same records with the same checks). A ``bootstrap`` job (``playbooks/bootstrap.yml`` limited to
    the Mini) is queued unless ``bootstrap`` is false."""
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=MINI_PATTERN, description="The Mini's inventory name")
    address: str = Field(max_length=253, description="Where the control node reaches it (ansible_host): a host name or IP address")
    tunnel_id: str | None = Field(None, max_length=36, description="Its Cloudflare tunnel's UUID (cf_tunnel_id)")
    max_claws: int = Field(DEFAULT_MAX_CLAWS, ge=0, le=1000, description="Claws it may hold (claw_max_per_mini)")
    base_port: int = Field(DEFAULT_BASE_PORT, ge=1024, le=65535, description="First gateway port (claw_base_port)")
    timezone: str = Field("UTC", max_length=100, description="IANA time zone of the nightly backup (mini_timezone)")
    status: Literal["active", "draining", "offline", "maintenance"] = Field("active", description="See PATCH")
    bootstrap: bool = Field(True, description="Queue playbooks/bootstrap.yml for it")
    callback_url: HttpUrl | None = Field(None, description=CALLBACK_DOC)

    @model_validator(mode="after")
    def _collection_checks(self):
        clean = mini.validate_mini(self.record())
        for key, value in clean.items():
            setattr(self, key, value)
        return self

    def record(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "address", "tunnel_id", "max_claws", "base_port", "timezone", "status")}


class MiniOut(BaseModel):
    name: str
    status: str
    max_claws: int
    base_port: int
    timezone: str = "UTC"
    source: Literal["inventory", "api"] = Field("inventory", description="inventory: the operator's inventory file; api: registered")
    address: str | None = None
    tunnel_id: str | None = None
    claws: int
    last_job: JobOut | None = None
    tombstones: dict | None = Field(None, description="Tombstones left on the Mini after the last prune (playbooks/prune.yml): "
                                    "count, bytes, checked_at; null before the first")
    health: dict | None = None


class MiniRegistered(BaseModel):
    mini: MiniOut
    job: JobOut | None = Field(None, description="The bootstrap job")


class MiniDetail(MiniOut):
    claw_records: list[ClawSummary] = Field(default_factory=list, description="The claws present on the Mini")
    routes: list[Route] = Field(default_factory=list, description="Its tunnel's routes, one per claw with a hostname")


# ---- the application ---------------------------------------------------------------------------------------------


class WebhookCreate(BaseModel):
    """Subscribe a receiver to event kinds. Its host must be allowed (``CLAWFARM_API_CALLBACK_HOSTS`` or the host of
    ``CLAWFARM_API_WEBHOOK_URL``) and resolve to public addresses only (checked now and at every delivery)."""
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl = Field(description="Receives each event as a signed POST (X-Clawfarm-Signature: sha256=<HMAC-SHA256 of the body>)")
    events: list[Literal["job.finished", "claw.health_changed", "alert.fired", "alert.resolved"]] = Field(
        min_length=1, max_length=4, description="Event kinds to receive")
    description: str | None = Field(None, max_length=200)


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None = None
    created_at: str | None = None


class DeliveryOut(BaseModel):
    """One event for one receiver: ``pending`` (retried at ``next_attempt_at``), ``delivered`` or ``dead``."""
    id: str
    subscription_id: str | None = Field(None, description="null: a job's callback_url or the operator's webhook_url")
    job_id: str | None = None
    event: str
    state: str
    attempts: int
    next_attempt_at: str | None = None
    last_error: str | None = None
    created_at: str | None = None
    delivered_at: str | None = None
