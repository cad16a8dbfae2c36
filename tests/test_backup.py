"""Backups on real SQLite and PostgreSQL targets (round trip, corruption, tables only), the
pg_dump/pg_restore processes (environment, timeout) with stand-in tools, and the SQL Server
orchestration against a recording stand-in for the pyodbc engine."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PureWindowsPath
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from bot.adapters.targets import mssql, postgresql
from bot.adapters.targets.dialect import BackupInfo, file_sha256
from bot.adapters.targets.target import Target
from bot.errors import BackupError, BackupVerificationError

ROWS = 2000  # enough for a multi-page SQLite file, so a truncation hits real data


def seed(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id BIGINT PRIMARY KEY, label VARCHAR(80))"))
        conn.execute(text("CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(40))"))
        conn.execute(
            text("INSERT INTO items (id, label) VALUES (:id, :label)"),
            [{"id": i, "label": f"item {i} " + "x" * 50} for i in range(1, ROWS + 1)],
        )
        conn.execute(text("INSERT INTO notes VALUES (1, 'original')"))


def snapshot(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {
            "items": conn.execute(text("SELECT id, label FROM items ORDER BY id")).all(),
            "notes": conn.execute(text("SELECT id, body FROM notes ORDER BY id")).all(),
        }


def mutate(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE items SET label = 'changed' WHERE id <= 10"))
        conn.execute(text("DELETE FROM items WHERE id > 1500"))
        conn.execute(text("INSERT INTO items (id, label) VALUES (99999, 'new')"))
        conn.execute(text("UPDATE notes SET body = 'edited'"))


@pytest.fixture
def target(target_url: str) -> Iterator[Target]:
    t = Target.connect("t", target_url)
    seed(t.engine)
    yield t
    t.engine.dispose()


def test_backup_change_restore_round_trip(target: Target, tmp_path: Path) -> None:
    d, engine = target.dialect, target.engine
    before = snapshot(engine)
    info = target.backup(tmp_path / "backups", label="pre-step_1", timeout=60)
    path = Path(info.location)
    assert path.is_file() and path.parent == tmp_path / "backups"
    assert path.name.startswith("pre-step_1-") and path.suffix == d.backup_suffix
    assert info.dialect == d.name and info.verified and info.tables is None
    assert info.size_bytes == path.stat().st_size > 0
    assert info.sha256 == file_sha256(path)

    mutate(engine)
    assert snapshot(engine) != before
    target.restore(info, timeout=60)
    assert snapshot(engine) == before


def test_verify_detects_a_truncated_backup(target: Target, tmp_path: Path) -> None:
    d, engine = target.dialect, target.engine
    info = target.backup(tmp_path, label="corrupt-me", timeout=60)
    d.verify(engine, info)  # intact
    data = Path(info.location).read_bytes()
    Path(info.location).write_bytes(data[: len(data) // 2])
    with pytest.raises(BackupVerificationError, match="bytes, expected"):
        d.verify(engine, info)
    # Without the recorded size and checksum the database tool itself must notice.
    with pytest.raises(BackupVerificationError, match=r"corrupt|unreadable"):
        d.verify(engine, replace(info, size_bytes=None, sha256=None))
    # Same length, altered content: only the checksum can tell.
    Path(info.location).write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(BackupVerificationError, match="sha256"):
        d.verify(engine, info)
    # A corrupted backup is never restored.
    mutate(engine)
    changed = snapshot(engine)
    with pytest.raises(BackupVerificationError):
        target.restore(info, timeout=60)
    assert snapshot(engine) == changed


def test_verify_detects_a_missing_backup(target: Target, tmp_path: Path) -> None:
    info = target.backup(tmp_path, label="gone", timeout=60)
    Path(info.location).unlink()
    with pytest.raises(BackupVerificationError, match="missing"):
        target.dialect.verify(target.engine, info)


def test_tables_only_backup_restores_only_those_tables(target: Target, tmp_path: Path) -> None:
    before = snapshot(target.engine)
    info = target.backup(tmp_path, label="items-only", tables=["items"], timeout=60)
    assert info.tables == ("items",) and info.verified
    mutate(target.engine)
    target.restore(info, timeout=60)
    after = snapshot(target.engine)
    assert after["items"] == before["items"]
    assert after["notes"] == [(1, "edited")]  # not part of the backup: left as it was


@pytest.mark.parametrize("label", ["", "../escape", "a/b", "has space", "-x", "x" * 101])
def test_bad_labels_are_rejected(target: Target, tmp_path: Path, label: str) -> None:
    with pytest.raises(ValueError, match="invalid backup label"):
        target.backup(tmp_path, label=label, timeout=60)


@pytest.mark.postgres
def test_pg_tables_only_dump_holds_only_those_tables(pg_url: str, tmp_path: Path) -> None:
    eng = create_engine(pg_url)
    seed(eng)
    info = postgresql.DIALECT.backup(eng, tmp_path, label="t", tables=["items"])
    eng.dispose()
    with pytest.raises(BackupError, match="no matching tables"):
        postgresql.DIALECT.backup(eng, tmp_path, label="t", tables=["missing_table"])
    listing = postgresql.subprocess.run(
        ["pg_restore", "--list", info.location], capture_output=True, text=True, check=True
    ).stdout
    assert "TABLE public items" in listing and "notes" not in listing


def test_pg_password_only_travels_in_the_environment() -> None:
    url = make_url("postgresql+psycopg://barq:s3cr%3Et%27x@db.example:6543/prod?sslmode=require")
    args, env = postgresql.connection_args(url)
    assert env == {"PGPASSWORD": "s3cr>t'x", "PGSSLMODE": "require"}
    assert not any("s3cr" in a for a in args)
    assert args == [
        "--no-password",
        "--host=db.example",
        "--port=6543",
        "--username=barq",
        "--dbname=dbname='prod'",
    ]


@pytest.mark.postgres
def test_pg_dump_failure_reports_stderr_without_the_password(pg_url: str, tmp_path: Path) -> None:
    secret = "Sup3r-Secret"
    bad = make_url(pg_url).set(database="barq_no_such_db", password=secret)
    eng = create_engine(bad)
    with pytest.raises(BackupError) as info:
        postgresql.DIALECT.backup(eng, tmp_path, label="x")
    eng.dispose()
    message = str(info.value)
    assert "pg_dump exited with status 1" in message
    assert '"barq_no_such_db" does not exist' in message
    assert secret not in message
    assert postgresql.redact(f"password={secret} and {secret}", secret) == "password=*** and ***"
    harmless = "pg_dump: password=%s is a placeholder; PWD=/var/lib"
    assert postgresql.redact(harmless, secret) == harmless, "look-alikes stay readable"


# -- pg_dump / pg_restore as processes, with stand-in tools on PATH ----------------------------


def _fake_tool(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)


@pytest.fixture
def fake_pg_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory put first on PATH, for stand-in pg_dump/pg_restore scripts."""
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir


PG_URL = "postgresql+psycopg://barq:pw@db.example:5432/prod?sslmode=require"


def test_pg_dump_sees_only_the_minimal_environment_and_libpq_settings(
    fake_pg_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot's Slack token and the like never reach pg_dump; the target's password and
    SSL mode do, through libpq's variables."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-not-for-pg_dump")
    monkeypatch.setenv("LANG", "C.UTF-8")
    seen = tmp_path / "env.txt"
    _fake_tool(fake_pg_bin, "pg_dump", f"env > {seen}\nexit 3")
    target = Target.connect("pg", PG_URL)
    with pytest.raises(BackupError, match="pg_dump exited with status 3"):
        target.backup(tmp_path / "backups", label="x", timeout=30)
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert "SLACK_BOT_TOKEN" not in env
    assert env["PGPASSWORD"] == "pw" and env["PGSSLMODE"] == "require"
    assert env["LANG"] == "C.UTF-8" and env["PATH"] == os.environ["PATH"]


def test_a_hanging_pg_tool_is_stopped_at_the_timeout(fake_pg_bin: Path, tmp_path: Path) -> None:
    """The tool and what it started are killed once the step's timeout is up."""
    _fake_tool(fake_pg_bin, "pg_dump", "sleep 60\nexit 0")
    target = Target.connect("pg", PG_URL)
    started = time.monotonic()
    with pytest.raises(BackupError, match=r"pg_dump did not finish within 0\.5 s; stopped it"):
        target.backup(tmp_path, label="x", timeout=0.5)
    # The shell's child sleep holds the output pipe: only a group kill ends it this soon.
    assert time.monotonic() - started < 10


# -- SQL Server: orchestration, checked against a recording stand-in -------------------------


class FakeCursor:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.pending = engine, 0

    def execute(self, sql: str) -> None:
        self.engine.log.append(sql)
        if self.engine.fail_on and self.engine.fail_on in sql:
            raise RuntimeError(f"[42000] failure in {sql.split()[0]} (3013)")
        self.pending = 2  # e.g. "Processed 512 pages" messages still to be consumed

    def nextset(self) -> bool:
        self.pending -= 1
        self.engine.log.append("<nextset>")
        return self.pending > 0

    def close(self) -> None:
        self.engine.log.append("<close>")


class FakeResult:
    def __init__(self, value: Any) -> None:
        self.value = value

    def scalar_one(self) -> Any:
        return self.value

    def scalar(self) -> Any:
        return self.value


class FakeConnection:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.connection = self  # pool proxy: .cursor() reaches the DBAPI connection
        self.driver_connection = self  # and so does .driver_connection
        self.timeout = 0  # pyodbc's query timeout, in seconds; 0: none

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.log.append("<closed>")

    def execution_options(self, **options: Any) -> FakeConnection:
        self.engine.log.append(f"<options {options}>")
        return self

    def exec_driver_sql(self, sql: str) -> FakeResult:
        self.engine.log.append(sql)
        return FakeResult("barq")

    def execute(self, clause: Any, params: Any = None) -> FakeResult:
        self.engine.log.append(f"<size query {params}>")
        return FakeResult(4096)

    def cursor(self) -> FakeCursor:
        self.engine.log.append(f"<timeout {self.timeout}>")
        return FakeCursor(self.engine)

    def invalidate(self) -> None:
        self.engine.log.append("<invalidate>")


class FakeEngine:
    def __init__(self, fail_on: str | None = None) -> None:
        self.log: list[str] = []
        self.fail_on = fail_on

    def connect(self) -> FakeConnection:
        return FakeConnection(self)

    def dispose(self) -> None:
        self.log.append("<dispose>")


BAK_DIR = PureWindowsPath(r"D:\SQLBackups")


def statements(log: list[str]) -> list[str]:
    return [entry.split(" N'")[0] for entry in log if not entry.startswith("<")]


def test_mssql_backup_runs_in_autocommit_and_verifies() -> None:
    engine = FakeEngine()
    info = mssql.DIALECT.backup(engine, BAK_DIR, label="pre", timeout=90.5)  # type: ignore[arg-type]
    assert info.location.startswith("D:\\SQLBackups\\pre-") and info.location.endswith(".bak")
    assert (info.dialect, info.size_bytes, info.sha256) == ("mssql", 4096, None)
    assert info.verified
    assert engine.log[0] == "<options {'isolation_level': 'AUTOCOMMIT'}>"
    assert statements(engine.log) == [
        "SELECT DB_NAME()",
        "BACKUP DATABASE [barq] TO DISK =",
        "RESTORE VERIFYONLY FROM DISK =",
    ]
    # Every informational result set is drained before the cursor closes.
    backup_at = next(i for i, e in enumerate(engine.log) if e.startswith("BACKUP"))
    assert engine.log[backup_at + 1 : backup_at + 4] == ["<nextset>", "<nextset>", "<close>"]
    assert f"N'{info.location}'" in engine.log[backup_at]
    # pyodbc's query timeout (whole seconds) bounds both statements.
    assert [e for e in engine.log if e.startswith("<timeout")] == ["<timeout 91>"] * 2


def test_mssql_backup_refuses_table_subsets() -> None:
    with pytest.raises(ValueError, match="whole database"):
        mssql.DIALECT.backup(FakeEngine(), BAK_DIR, label="x", tables=["dbo.Tasks"])  # type: ignore[arg-type]


def test_mssql_failed_backup_says_what_to_do_where_the_server_cannot_back_up() -> None:
    """The server's own message, and the platform's backup in a command step as the way out."""
    with pytest.raises(BackupError) as info:
        mssql.DIALECT.backup(FakeEngine(fail_on="BACKUP DATABASE"), BAK_DIR, label="x")  # type: ignore[arg-type]
    message = str(info.value)
    assert "failure in BACKUP (3013)" in message and "in a `command` step instead" in message


def test_mssql_failed_verification_raises() -> None:
    engine = FakeEngine(fail_on="VERIFYONLY")
    info = BackupInfo(r"D:\SQLBackups\x.bak", "mssql", "x", None, None, True)
    with pytest.raises(BackupVerificationError, match=r"x\.bak"):
        mssql.DIALECT.verify(engine, info)  # type: ignore[arg-type]
    with pytest.raises(BackupVerificationError):
        mssql.DIALECT.restore(engine, info)  # type: ignore[arg-type]
    assert not any(e.startswith("ALTER") or e.startswith("RESTORE DATABASE") for e in engine.log)


@pytest.mark.parametrize("fail_on", [None, "RESTORE DATABASE"])
def test_mssql_restore_sequence_always_reopens_the_database(fail_on: str | None) -> None:
    engine = FakeEngine(fail_on=fail_on)
    info = BackupInfo(r"D:\SQLBackups\x.bak", "mssql", "x", None, None, True)
    if fail_on:
        with pytest.raises(BackupError, match=r"RESTORE DATABASE \[barq\] failed"):
            mssql.DIALECT.restore(engine, info)  # type: ignore[arg-type]
    else:
        mssql.DIALECT.restore(engine, info)  # type: ignore[arg-type]
    assert statements(engine.log) == [
        "RESTORE VERIFYONLY FROM DISK =",
        "SELECT DB_NAME()",
        "USE master",
        "ALTER DATABASE [barq] SET SINGLE_USER WITH ROLLBACK IMMEDIATE;\nRESTORE DATABASE [barq]"
        " FROM DISK =",
        "ALTER DATABASE [barq] SET MULTI_USER",
    ]
    assert engine.log[-3:] == ["<invalidate>", "<closed>", "<dispose>"]


@pytest.mark.parametrize(
    ("dest_dir", "prefix"),
    [
        (r"D:\SQLBackups", "D:\\SQLBackups\\nightly-"),
        ("/var/opt/mssql/backup", "/var/opt/mssql/backup/nightly-"),
    ],
)
def test_mssql_backup_path_follows_the_server_os(dest_dir: str, prefix: str) -> None:
    info = mssql.DIALECT.backup(FakeEngine(), dest_dir, label="nightly")  # type: ignore[arg-type]
    assert info.location.startswith(prefix)
