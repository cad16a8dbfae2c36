"""Shared database fixtures: throwaway SQLite files, fresh PostgreSQL databases and, when a
server is given, fresh SQL Server databases.

``pg_url`` connects to the maintenance database given by ``BARQ_TEST_PG_ADMIN_URL``
(default: local trust-auth server) and creates a uniquely named database per test. When the
server is unreachable the test is skipped, unless ``CI=true``, where it must fail instead.

``mssql_url`` does the same on the SQL Server named by ``BARQ_TEST_MSSQL_URL`` (a login that
may create databases, on its ``master``). Without it those tests are skipped, also in CI, with
one line saying how to run them; with it, a server that cannot be reached fails them.

Retries of transient errors wait no time in tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
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


MSSQL_ADMIN_URL = os.environ.get("BARQ_TEST_MSSQL_URL")
_MSSQL_HOW = (
    "set BARQ_TEST_MSSQL_URL to a SQL Server to run them (README: Testing against SQL Server)"
)


@pytest.fixture(scope="session")
def mssql_admin_engine() -> Iterator[Engine]:
    """AUTOCOMMIT engine on the SQL Server of ``BARQ_TEST_MSSQL_URL`` (checked once)."""
    if not MSSQL_ADMIN_URL:
        pytest.skip(f"SQL Server tests: {_MSSQL_HOW}")
    engine = create_engine(MSSQL_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        engine.dispose()
        pytest.fail(f"BARQ_TEST_MSSQL_URL is set, but: {exc.orig}", pytrace=False)
    yield engine
    engine.dispose()


@pytest.fixture
def mssql_url(mssql_admin_engine: Engine) -> Iterator[str]:
    """URL of a new, empty SQL Server database, dropped after the test."""
    name = f"barq_t_{secrets.token_hex(6)}"
    with mssql_admin_engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE [{name}]"))
    try:
        yield mssql_admin_engine.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with mssql_admin_engine.connect() as conn:
            conn.execute(
                text(
                    f"IF DB_ID('{name}') IS NOT NULL BEGIN ALTER DATABASE [{name}] SET SINGLE_USER"
                    f" WITH ROLLBACK IMMEDIATE; DROP DATABASE [{name}] END"
                )
            )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a (not yet created) SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'barq.db'}"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mssql", marks=pytest.mark.mssql),
    ]
)
def target_url(request: pytest.FixtureRequest) -> str:
    """URL of an empty target database, once per supported dialect (SQL Server only when
    ``BARQ_TEST_MSSQL_URL`` names one)."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "pg_url", "mssql": "mssql_url"}
    return str(request.getfixturevalue(fixture[request.param]))


def pytest_report_header(config: pytest.Config) -> str:
    """One line on whether the SQL Server tests run."""
    if MSSQL_ADMIN_URL:
        return "SQL Server tests: on the server of BARQ_TEST_MSSQL_URL"
    return f"SQL Server tests: not run; {_MSSQL_HOW}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without BARQ_TEST_MSSQL_URL the SQL Server tests are left out (the header says so once)
    rather than skipped one by one."""
    if MSSQL_ADMIN_URL:
        return
    left_out = [item for item in items if item.get_closest_marker("mssql")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("mssql")]
