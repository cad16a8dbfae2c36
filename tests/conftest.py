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

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
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


def _admin_engine(url: str, unreachable: Callable[[str], None], **kw: Any) -> Iterator[Engine]:
    """An AUTOCOMMIT engine on a server's maintenance database, checked once; when it cannot
    be reached, ``unreachable`` is called with the reason (it skips or fails the test)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool, **kw)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        engine.dispose()
        unreachable(f"{engine.url!r} is unreachable: {exc.orig}")
    yield engine
    engine.dispose()


def _scratch_database(admin: Engine, create: str, drop: str) -> Iterator[str]:
    """A new database named ``barq_t_<random>`` (``{name}`` in ``create`` and ``drop``) on
    ``admin``'s server, dropped after the test; yields its URL."""
    name = f"barq_t_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(text(create.format(name=name)))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(drop.format(name=name)))


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[Engine]:
    """AUTOCOMMIT engine on the PostgreSQL maintenance database (checked once per session)."""
    yield from _admin_engine(
        PG_ADMIN_URL, _postgres_unavailable, connect_args={"connect_timeout": 3}
    )


@pytest.fixture
def pg_url(pg_admin_engine: Engine) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped (WITH FORCE) after the test."""
    yield from _scratch_database(
        pg_admin_engine, "CREATE DATABASE {name}", "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )


MSSQL_ADMIN_URL = os.environ.get("BARQ_TEST_MSSQL_URL")
_MSSQL_HOW = "set BARQ_TEST_MSSQL_URL to a SQL Server to run them (README: SQL Server tests)"


def _mssql_unavailable(reason: str) -> None:
    """The variable names a server, so a server that cannot be reached fails the test."""
    pytest.fail(f"BARQ_TEST_MSSQL_URL is set, but {reason}", pytrace=False)


@pytest.fixture(scope="session")
def mssql_admin_engine() -> Iterator[Engine]:
    """AUTOCOMMIT engine on the SQL Server of ``BARQ_TEST_MSSQL_URL`` (checked once)."""
    if not MSSQL_ADMIN_URL:
        pytest.skip(f"SQL Server tests: {_MSSQL_HOW}")
    yield from _admin_engine(MSSQL_ADMIN_URL, _mssql_unavailable)


@pytest.fixture
def mssql_url(mssql_admin_engine: Engine) -> Iterator[str]:
    """URL of a new, empty SQL Server database, dropped after the test."""
    yield from _scratch_database(
        mssql_admin_engine,
        "CREATE DATABASE [{name}]",
        "IF DB_ID('{name}') IS NOT NULL BEGIN ALTER DATABASE [{name}] SET SINGLE_USER"
        " WITH ROLLBACK IMMEDIATE; DROP DATABASE [{name}] END",
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


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def twin_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two empty target databases of one dialect (for oracle tests: the bot's copy and the
    procedure's), once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.db'}", f"sqlite:///{tmp_path / 'procedure.db'}"
        return
    admin = request.getfixturevalue("pg_admin_engine")
    create, drop = "CREATE DATABASE {name}", "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    scratch = contextlib.contextmanager(_scratch_database)
    with scratch(admin, create, drop) as first, scratch(admin, create, drop) as second:
        yield first, second
