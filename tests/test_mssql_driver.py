"""SQL Server's driver chain from the install: SQLAlchemy's mssql+pyodbc, pyodbc, unixODBC and
a real ODBC driver (FreeTDS's, which ``.ci/ensure-odbc`` installs), exercised as far as
connecting. No SQL Server runs here, so a connection goes to a loopback port where nothing
listens and fails with the driver's own network error.

Without unixODBC or the FreeTDS driver these tests skip, except under ``CI=true``, where they
must fail instead (as the PostgreSQL tests do).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from importlib.metadata import requires
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bot.adapters.targets import mssql
from bot.adapters.targets.target import Target
from bot.app import build
from bot.errors import ConfigError, TargetUnavailable
from bot.settings import load_settings
from tests import harness

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Str0ng-S3cret"
MS18 = "ODBC Driver 18 for SQL Server"


def _odbc_unavailable(reason: str) -> None:
    """Skip locally, but fail under CI, where .ci/ensure-odbc has installed the driver."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: SQL Server driver tests must not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pyodbc() -> ModuleType:
    """pyodbc, loaded over unixODBC, with FreeTDS's driver registered."""
    try:
        import pyodbc
    except ModuleNotFoundError:
        raise  # pyodbc is a dependency of the bot: its absence is a failure, never a skip
    except ImportError as exc:
        _odbc_unavailable(f"unixODBC is missing ({exc}); run .ci/ensure-odbc")
    if "FreeTDS" not in pyodbc.drivers():
        _odbc_unavailable(f"no FreeTDS ODBC driver in {pyodbc.drivers()}; run .ci/ensure-odbc")
    return pyodbc


def free_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def freetds_url(port: int) -> str:
    return (
        f"mssql+pyodbc://migrator:{PASSWORD}@127.0.0.1:{port}/BARQ_STAGING"
        "?driver=FreeTDS&TDS_Version=7.4"
    )


def ms18_url() -> str:
    return (
        f"mssql+pyodbc://migrator:{PASSWORD}@staging-sql:1433/BARQ_STAGING"
        "?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes"
    )


# -- the install --------------------------------------------------------------------------


def test_pyodbc_is_installed_with_the_bot() -> None:
    """pyodbc is one of the bot's own dependencies, not an extra to remember."""
    pyodbc_requirements = [r for r in requires("barq-bot") or [] if r.startswith("pyodbc")]
    assert pyodbc_requirements, requires("barq-bot")
    assert all("extra" not in r for r in pyodbc_requirements), pyodbc_requirements


def test_ensure_odbc_is_quiet_when_everything_is_there(pyodbc: ModuleType) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "ensure-odbc")], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_pyodbc_is_loaded_only_for_a_sql_server_target(pyodbc: ModuleType) -> None:
    """Importing the bot and connecting other targets leaves pyodbc (and unixODBC) unloaded;
    a SQL Server target loads it, when it is configured."""
    script = textwrap.dedent(
        f"""
        import sys
        import bot.app, bot.cli
        from bot.adapters.targets.target import Target
        Target.connect("lite", "sqlite://")
        assert "pyodbc" not in sys.modules, "loaded before any SQL Server target"
        Target.connect("staging", {freetds_url(free_port())!r})
        assert "pyodbc" in sys.modules, "not loaded by a SQL Server target"
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


# -- what is missing, said at start-up ------------------------------------------------------


class _Refuse(importlib.abc.MetaPathFinder):
    """Makes ``import pyodbc`` raise ``error``, as on a machine that lacks what it needs."""

    def __init__(self, error: ImportError) -> None:
        self.error = error

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "pyodbc":
            raise self.error
        return None


def _refuse_pyodbc(monkeypatch: pytest.MonkeyPatch, error: ImportError) -> Iterator[None]:
    monkeypatch.delitem(sys.modules, "pyodbc", raising=False)
    finder = _Refuse(error)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


@pytest.fixture
def no_unixodbc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The dynamic loader's refusal on a machine without unixODBC (pyodbc 5.5's, seen here
    before ``apt-get install unixodbc``)."""
    missing = "libodbc.so.2: cannot open shared object file: No such file or directory"
    yield from _refuse_pyodbc(monkeypatch, ImportError(missing))


@pytest.fixture
def no_pyodbc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An install that lost pyodbc."""
    yield from _refuse_pyodbc(
        monkeypatch, ModuleNotFoundError("No module named 'pyodbc'", name="pyodbc")
    )


@pytest.mark.usefixtures("no_unixodbc")
def test_a_missing_unixodbc_says_what_to_install() -> None:
    with pytest.raises(ConfigError) as info:
        Target.connect("staging", ms18_url())
    message = str(info.value)
    assert "SQL Server target staging needs unixODBC" in message
    assert "apt-get install unixodbc" in message
    assert "apt-get install tdsodbc" in message and MS18 in message
    assert "libodbc.so.2" in message  # the loader's own reason
    assert PASSWORD not in message


@pytest.mark.usefixtures("no_pyodbc")
def test_a_missing_pyodbc_says_to_reinstall_the_bot() -> None:
    with pytest.raises(ConfigError, match=r"staging needs the pyodbc package.*make install"):
        Target.connect("staging", ms18_url())


@pytest.mark.usefixtures("no_unixodbc")
def test_other_targets_start_without_unixodbc() -> None:
    assert Target.connect("lite", "sqlite://").dialect.name == "sqlite"


def test_a_driver_unixodbc_does_not_know_is_named_with_the_installed_ones(
    pyodbc: ModuleType,
) -> None:
    with pytest.raises(ConfigError) as info:
        Target.connect("production", ms18_url())
    message = str(info.value)
    assert f"ODBC driver {MS18!r}" in message
    assert "FreeTDS" in message  # installed, so offered
    assert "apt-get install tdsodbc" in message
    assert PASSWORD not in message


def test_the_driver_in_an_odbc_connect_string_is_checked(pyodbc: ModuleType) -> None:
    raw = f"DRIVER={{{MS18}}};SERVER=staging-sql;DATABASE=BARQ;UID=migrator;PWD={PASSWORD}"
    url = "mssql+pyodbc:///?odbc_connect=" + raw.replace(";", "%3B").replace(" ", "+")
    with pytest.raises(ConfigError, match=f"ODBC driver '{MS18}'"):
        Target.connect("staging", url)


def test_a_url_without_a_driver_says_to_name_one(pyodbc: ModuleType) -> None:
    with pytest.raises(ConfigError, match=r"names no ODBC driver.*FreeTDS"):
        Target.connect("staging", f"mssql+pyodbc://migrator:{PASSWORD}@staging-sql:1433/BARQ")


def test_a_dsn_url_leaves_the_driver_to_odbc_ini(pyodbc: ModuleType) -> None:
    """``mssql+pyodbc://user:pw@mydsn``: the DSN names its driver in odbc.ini."""
    assert Target.connect("staging", f"mssql+pyodbc://migrator:{PASSWORD}@barq_dsn").dialect


# -- the driver's own errors, shown as such -------------------------------------------------


def test_an_unreachable_server_fails_with_the_drivers_network_error(pyodbc: ModuleType) -> None:
    target = Target.connect("staging", freetds_url(free_port()))
    try:
        with pytest.raises(TargetUnavailable) as info:
            target.count("SELECT COUNT(*) FROM Tasks", {})
    finally:
        target.engine.dispose()
    message = str(info.value)
    assert message.startswith("cannot reach staging (mssql 127.0.0.1/BARQ_STAGING): ")
    assert "[FreeTDS]" in message  # the driver's own words
    assert "('08" not in message, "the message, not pyodbc's (SQLSTATE, message) tuple"
    assert PASSWORD not in message
    cause: Any = info.value.__cause__
    assert isinstance(cause.orig, pyodbc.Error)
    assert mssql.DIALECT.classify(cause) == "connection"


async def test_plan_on_an_unreachable_sql_server_shows_the_drivers_error(
    pyodbc: ModuleType, tmp_path: Path
) -> None:
    """``/migrate plan`` over signed HTTP, as Slack sends it: the user reads what the driver
    said, not that something went wrong inside the bot."""
    h = await harness.start(tmp_path, harness.policies(freetds_url(free_port())))
    try:
        reply = harness.text_of(
            await h.slash(
                "U0ALICE", "plan tenant-consolidation source_tenant=3 target_tenant=7 on=staging"
            )
        )
    finally:
        await h.close()
    assert "cannot reach staging" in reply
    assert "[FreeTDS]" in reply
    assert "something went wrong" not in reply
    assert PASSWORD not in reply


def test_start_up_refuses_a_sql_server_target_whose_driver_is_missing(
    pyodbc: ModuleType, tmp_path: Path
) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'state.db'}",
        targets=harness.policies(ms18_url()),
        slack_bot_token="xoxb-local",
    )
    with pytest.raises(ConfigError, match=f"SQL Server target staging: .*'{MS18}'"):
        build(settings)
