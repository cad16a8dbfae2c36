"""Find the dialect of a target: by engine, connection, URL or name.

Its own module so that ``dialect.py`` (the interface) needs none of the dialect modules that
implement it.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import URL, Connection, Engine, make_url

from bot.adapters.targets import mssql, postgresql, sqlite
from bot.adapters.targets.dialect import Dialect

__all__ = ["check_client", "dialect_for"]

_KNOWN: dict[str, Dialect] = {
    "mssql": mssql.DIALECT,
    "sqlserver": mssql.DIALECT,
    "postgresql": postgresql.DIALECT,
    "postgres": postgresql.DIALECT,
    "sqlite": sqlite.DIALECT,
}

# What a dialect's driver needs on this machine beyond the bot's Python packages.
_CLIENT_CHECKS: dict[str, Callable[[str, URL], None]] = {"mssql": mssql.check_client}


def check_client(target: str, url: URL) -> None:
    """Raise ConfigError saying what to install when this machine lacks what target
    ``target``'s driver needs (for SQL Server: unixODBC and an ODBC driver); loads a
    dialect's driver only for a URL of that dialect."""
    check = _CLIENT_CHECKS.get(url.get_backend_name())
    if check is not None:
        check(target, url)


def dialect_for(target: Engine | Connection | URL | str) -> Dialect:
    """Return the dialect singleton for an engine, connection, URL or dialect name.

    Accepts ``mssql``/``sqlserver``, ``postgresql``/``postgres``, ``sqlite`` or any
    SQLAlchemy URL (``mssql+pyodbc://...``); raises ValueError for anything else.
    """
    if isinstance(target, Engine | Connection):
        name = target.dialect.name
    elif isinstance(target, URL):
        name = target.get_backend_name()
    elif isinstance(target, str) and ":" in target:
        name = make_url(target).get_backend_name()
    else:
        name = str(target).strip().lower().split("+", 1)[0]
    try:
        return _KNOWN[name]
    except KeyError:
        raise ValueError(f"unsupported target dialect {name!r}") from None
