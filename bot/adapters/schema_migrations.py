"""Alembic migrations of the bot's own state schema (``barq-bot db upgrade``)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from bot.adapters.targets.dialect import error_message
from bot.errors import StateUnavailable

logger = logging.getLogger(__name__)
_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    """An Alembic config for ``engine``, with no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the state database at ``engine`` up to ``revision``, quietly (Alembic's own INFO
    lines are not logged). Raises StateUnavailable, naming the database without its password
    and the driver's reason, if it cannot be reached."""
    config = alembic_config(engine)
    shown = engine.url.render_as_string(hide_password=True)
    alembic_logger = logging.getLogger("alembic")
    level = alembic_logger.level
    alembic_logger.setLevel(max(level, logging.WARNING))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except (OperationalError, InterfaceError) as exc:
        cause = " ".join(error_message(exc).split()) or type(exc).__name__
        raise StateUnavailable(shown, cause) from exc
    finally:
        alembic_logger.setLevel(level)
    logger.info("state schema is at %s on %s", revision, shown)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the state database at ``engine`` back to ``revision`` (``base`` empties it)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
