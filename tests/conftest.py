"""Shared database fixtures: throwaway SQLite files and fresh PostgreSQL databases.

``pg_url`` connects to the maintenance database given by ``BARQ_TEST_PG_ADMIN_URL``
(default: local trust-auth server) and creates a uniquely named database per test. When the
server is unreachable the test is skipped, unless ``CI=true``, where it must fail instead.
Retries of transient errors wait no time in tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from bot.adapters.targets import retries

# The one switch for the whole suite: retries of transient errors wait no time. A test that
# checks a retry waited patches ``retries.wait_before_retry``.
retries.set_testing(True)

PG_ADMIN_URL = os.environ.get(
    "BARQ_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_unavailable(reason: str) -> None:
    """Skip locally, but fail under CI, where PostgreSQL is part of the contract."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must not be skipped)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[Engine]:
    """AUTOCOMMIT engine on the PostgreSQL maintenance database (checked once per session)."""
    engine = create_engine(
        PG_ADMIN_URL,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 3},
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        _postgres_unavailable(f"PostgreSQL unreachable at {engine.url!r}: {exc.orig}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin_engine: Engine) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped (WITH FORCE) after the test."""
    name = f"barq_t_{secrets.token_hex(6)}"
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield pg_admin_engine.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with pg_admin_engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a (not yet created) SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'barq.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def target_url(request: pytest.FixtureRequest) -> str:
    """URL of an empty target database, once per supported dialect."""
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url"))
