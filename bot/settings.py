"""Settings, read once at start-up: the only module that reads the environment.

Sources, strongest first: environment variables, the YAML file named by ``$BARQ_CONFIG``,
then defaults. Target URLs may hold ``${VAR}`` placeholders, filled from the environment so
that passwords live in the environment (or a secret store) and never in the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.domain.approval import ApprovalPolicy
from bot.domain.windows import WindowsConfig
from bot.errors import ConfigError

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
    # downtime windows: approved runs wait for one (none: they start at once)
    windows: WindowsConfig | None = None

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
    port: int = Field(default=3000, alias="PORT", ge=0, le=65535)

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
