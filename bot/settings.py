"""Settings, read once at start-up: the only module that reads the environment.

Sources, strongest first: environment variables, the YAML file named by ``$BARQ_CONFIG``,
then defaults. Target URLs may hold ``${VAR}`` placeholders, filled from the environment so
that passwords live in the environment (or a secret store) and never in the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.domain.approval import ApprovalPolicy
from bot.domain.blocking import MonitorSettings
from bot.domain.windows import WindowsConfig
from bot.errors import ConfigError

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _secret(env: str, where: str) -> SecretStr:
    """The secret held by the environment variable ``env``; a missing one is a start-up
    error naming the setting (``where``) and the variable."""
    value = os.environ.get(env, "")
    if not value:
        raise ValueError(
            f"{where} names the environment variable {env}, which is not set (or empty);"
            f" set {env} in the bot's environment, or remove this contact"
        )
    return SecretStr(value)


class PagerDutyContact(BaseModel):
    """A PagerDuty service, paged through the Events API v2 with its integration's routing
    key (read from the environment variable ``routing_key_env``)."""

    model_config = ConfigDict(extra="forbid")

    routing_key_env: str = Field(min_length=1)
    url: str = "https://events.pagerduty.com"
    # the incident's severity; by default critical on a production target, else error
    severity: Literal["critical", "error", "warning", "info"] | None = None
    _routing_key: SecretStr = PrivateAttr(default=SecretStr(""))

    @model_validator(mode="after")
    def _read_key(self) -> PagerDutyContact:
        self._routing_key = _secret(self.routing_key_env, "pagerduty.routing_key_env")
        return self

    @property
    def routing_key(self) -> SecretStr:
        """The routing key (never logged or shown)."""
        return self._routing_key


class OpsgenieContact(BaseModel):
    """An Opsgenie account, paged through its Alert API with an API integration's key (read
    from the environment variable ``api_key_env``), to ``responders`` (e.g. ``{type: team,
    name: dba}``)."""

    model_config = ConfigDict(extra="forbid")

    api_key_env: str = Field(min_length=1)
    url: str = "https://api.opsgenie.com"
    responders: list[dict[str, str]] = Field(default_factory=list)
    _api_key: SecretStr = PrivateAttr(default=SecretStr(""))

    @model_validator(mode="after")
    def _read_key(self) -> OpsgenieContact:
        self._api_key = _secret(self.api_key_env, "opsgenie.api_key_env")
        return self

    @property
    def api_key(self) -> SecretStr:
        """The API key (never logged or shown)."""
        return self._api_key


class WebhookContact(BaseModel):
    """Any HTTP endpoint: a JSON POST per page event, signed with HMAC-SHA256 of the body in
    ``X-Barq-Signature: sha256=<hex>`` under the secret in ``secret_env``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1)
    secret_env: str = Field(min_length=1)
    _secret: SecretStr = PrivateAttr(default=SecretStr(""))

    @model_validator(mode="after")
    def _read_secret(self) -> WebhookContact:
        self._secret = _secret(self.secret_env, "webhook.secret_env")
        return self

    @property
    def secret(self) -> SecretStr:
        """The signing secret (never logged or shown)."""
        return self._secret


class Contacts(BaseModel):
    """Who is paged when a run on a target needs a person: any of PagerDuty, Opsgenie, a
    webhook, and Slack users (``U…``) or user groups (``S…``) mentioned in the thread."""

    model_config = ConfigDict(extra="forbid")

    pagerduty: PagerDutyContact | None = None
    opsgenie: OpsgenieContact | None = None
    webhook: WebhookContact | None = None
    slack: list[str] = Field(default_factory=list)

    @field_validator("slack")
    @classmethod
    def _slack_ids(cls, value: list[str]) -> list[str]:
        for who in value:
            if not re.fullmatch(r"[USW][A-Z0-9]{2,}", who):
                raise ValueError(
                    f"slack contact {who!r} is not a Slack user id (U…) or user group id (S…);"
                    " use the id, not the display name"
                )
        return value

    def empty(self) -> bool:
        """Whether nobody is named."""
        return not (self.pagerduty or self.opsgenie or self.webhook or self.slack)


class StatusPageConfig(BaseModel):
    """A Statuspage-style hook: a signed JSON POST opening "maintenance in progress" when a
    production run starts, an incident when a run fails, and resolving them."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1)
    secret_env: str = Field(min_length=1)
    _secret: SecretStr = PrivateAttr(default=SecretStr(""))

    @model_validator(mode="after")
    def _read_secret(self) -> StatusPageConfig:
        self._secret = _secret(self.secret_env, "status_page.secret_env")
        return self

    @property
    def secret(self) -> SecretStr:
        """The signing secret (never logged or shown)."""
        return self._secret


class TargetConfig(BaseModel):
    """A named target database: its SQLAlchemy URL and its approval policy."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr
    description: str = ""
    production: bool = False
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    # at start the plan's counts are taken again; one that moved by more than this since the
    # request is said in the thread, and on a production target needs a fresh approval
    count_drift_percent: float = Field(default=10.0, ge=0)
    # the blocking monitor of runs on this target: poll interval, throttle and pause limits
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    # who is paged for this target's runs; unset: the default contacts
    contacts: Contacts | None = None
    # downtime windows: approved runs wait for one (none: they start at once)
    windows: WindowsConfig | None = None
    # where the stakeholders of this target read its runs' notices (a Slack channel id);
    # unset: the global notify_channel
    notify_channel: str = ""

    @field_validator("windows")
    @classmethod
    def _crons(cls, value: WindowsConfig | None) -> WindowsConfig | None:
        from bot.adapters.calendar import check

        if value is not None:
            try:
                check(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("url", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _PLACEHOLDER.sub(_from_environment, value)
        return value


def _from_environment(match: re.Match[str]) -> str:
    name = match.group(1)
    if name not in os.environ:
        raise ValueError(f"the target URL needs ${{{name}}}, which is not set in the environment")
    return os.environ[name]


class Settings(BaseSettings):
    """Everything the bot is configured with."""

    model_config = SettingsConfigDict(env_prefix="BARQ_", extra="ignore", populate_by_name=True)

    database_url: str = "sqlite:///var/barq-state.db"
    runbooks_dir: Path = Path("runbooks")
    backup_dir: Path = Path("var/backups")
    targets: dict[str, TargetConfig] = Field(default_factory=dict)
    approvals_channel: str = ""
    notify_channel: str = ""
    poll_seconds: float = Field(default=15.0, gt=0)
    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")
    # updates of one Slack message are coalesced to at most one per this many seconds
    slack_update_seconds: float = Field(default=3.0, ge=0)
    port: int = Field(default=3000, alias="PORT", ge=0, le=65535)
    # the emergency contacts of targets without contacts of their own
    contacts: Contacts = Field(default_factory=Contacts)
    # e.g. https://acme.slack.com: pages link to the run's Slack thread
    slack_workspace_url: str = ""
    status_page: StatusPageConfig | None = None

    def contacts_for(self, target: str) -> Contacts:
        """Who is paged for runs on ``target``: its own contacts, else the default."""
        cfg = self.targets.get(target)
        if cfg is not None and cfg.contacts is not None:
            return cfg.contacts
        return self.contacts

    def paging(self) -> bool:
        """Whether anyone at all is paged (or a status page told)."""
        every = [self.contacts, *(t.contacts for t in self.targets.values() if t.contacts)]
        return self.status_page is not None or any(not c.empty() for c in every)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _yaml_source(settings_cls)


def _yaml_source(settings_cls: type[BaseSettings]) -> PydanticBaseSettingsSource:
    path = os.environ.get("BARQ_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"BARQ_CONFIG={path}: cannot read it: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"BARQ_CONFIG={path}: expected a mapping of settings")
    return InitSettingsSource(settings_cls, init_kwargs=data)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once; a bad value raises ConfigError naming the setting."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
