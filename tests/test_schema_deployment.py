"""schema-deployment as the runbook's "Entity Framework Migrations" has it: the dry run on a
server target shows `dotnet ef` with the target's connection string (password masked), the run
gives a `dotnet` (a fake on PATH) that string in its environment only, and the procedure's
INFORMATION_SCHEMA check passes or fails on the tables the migrations added."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlalchemy import create_engine, make_url, text

from bot.adapters import blocks
from bot.adapters.runbook_files import load_runbook
from bot.adapters.targets.target import Target
from bot.domain.lifecycle import State
from bot.domain.steps import CheckStep
from tests import harness
from tests.oracle import ROOT, run_bot

RUNBOOK = load_runbook(ROOT / "runbooks" / "schema-deployment.yaml")
PASSWORD = "pa;ss \"w'rd"  # needs quoting in a connection string; trust auth ignores it
PARAMS = {"source_dir": "/srv/barq", "new_tables": "New%"}

# A stand-in for the dotnet SDK: logs its arguments, environment and the connection string it
# parsed as ADO.NET does, and for `ef database update` runs @CREATE@ on the target.
FAKE_DOTNET = """#!@PYTHON@
import json, os, re, sys
conn = os.environ.get("ConnectionStrings__DefaultConnection", "")
parsed = {}
pair = r'\\s*([^=;]+?)\\s*=\\s*("(?:[^"]|"")*"|\\'(?:[^\\']|\\'\\')*\\'|[^;]*)\\s*(?:;|$)'
for key, value in re.findall(pair, conn):
    if value[:1] in "\\"'" and value:
        value = value[1:-1].replace(value[0] * 2, value[0])
    parsed[key.lower()] = value
with open(@LOG@, "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "env": dict(os.environ), "conn": parsed}) + "\\n")
print("connecting with", conn, flush=True)
if sys.argv[1:4] == ["ef", "database", "update"] and @CREATE@:
    import psycopg
    with psycopg.connect(
        host=parsed["host"], port=parsed["port"], dbname=parsed["database"],
        user=parsed["username"], password=parsed["password"],
    ) as db:
        db.execute(@CREATE@)
"""


def _check() -> CheckStep:
    step = next(s for s in RUNBOOK.steps if s.name == "verify-schema")
    assert isinstance(step, CheckStep)
    return step


def _with_password(url: str) -> str:
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def _fake_dotnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, create: str | None) -> Path:
    """Put the fake `dotnet` first on PATH; return the file it logs its calls to."""
    bin_dir, log = tmp_path / "bin", tmp_path / "dotnet.log"
    bin_dir.mkdir()
    script = FAKE_DOTNET.replace("@PYTHON@", sys.executable)
    script = script.replace("@LOG@", repr(str(log))).replace("@CREATE@", repr(create))
    dotnet = bin_dir / "dotnet"
    dotnet.write_text(script)
    dotnet.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return log


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.postgres
async def test_the_dry_run_on_postgresql_shows_the_npgsql_connection_string_password_masked(
    tmp_path: Path, pg_url: str
) -> None:
    url = make_url(pg_url)
    h = await harness.start(tmp_path, harness.policies(_with_password(pg_url)), ROOT / "runbooks")
    try:
        plan, counts = await h.bot.service.plan("schema-deployment", PARAMS, "staging")
    finally:
        await h.close()
    shown = json.dumps(blocks.plan_message(plan, counts))
    conn = (
        f"Host={url.host};Port={url.port or 5432};Database={url.database};Username={url.username}"
    )
    assert f"ConnectionStrings__DefaultConnection={conn};Password=***" in shown
    assert "dotnet ef database update --project /srv/barq/src/BARQ.Infrastructure" in shown
    assert "pa;ss" not in shown and "w'rd" not in shown
    # what runs is the command as the runbook has it: the secret is filled in only then
    command = plan.steps[1].command  # type: ignore[union-attr]
    assert command.env == {"ConnectionStrings__DefaultConnection": "{target.connection_string}"}


@pytest.mark.postgres
async def test_a_run_on_postgresql_gives_dotnet_the_connection_string_in_its_environment(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _fake_dotnet(tmp_path, monkeypatch, 'CREATE TABLE "NewWidgets" (Id INT)')
    m = await run_bot(tmp_path, _with_password(pg_url), "schema-deployment", PARAMS)
    update, listing = _calls(log)
    project = ["--project", "/srv/barq/src/BARQ.Infrastructure"]
    project += ["--startup-project", "/srv/barq/src/BARQ.API"]
    assert update["argv"] == ["ef", "database", "update", *project, "--verbose"]
    assert listing["argv"] == ["ef", "migrations", "list", *project]
    url = make_url(pg_url)
    expected = {
        "host": url.host,
        "port": str(url.port or 5432),
        "database": url.database,
        "username": url.username,
        "password": PASSWORD,
    }
    for call in (update, listing):
        assert call["conn"] == expected
        assert set(call["env"]) <= {"PATH", "HOME", "LANG", "ConnectionStrings__DefaultConnection"}
        assert not any("pa;ss" in arg for arg in call["argv"])
    assert m.state is State.SUCCEEDED


@pytest.mark.postgres
async def test_a_run_whose_migrations_add_no_matching_table_fails_at_verify_schema(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_dotnet(tmp_path, monkeypatch, "CREATE TABLE OtherWidgets (Id INT)")
    m = await run_bot(
        tmp_path, _with_password(pg_url), "schema-deployment", PARAMS, state=State.FAILED
    )
    assert m.error == "step 4 (verify-schema): check failed: got 0, expected > 0"


@pytest.mark.parametrize(
    ("ddl", "pattern", "passes"),
    [
        ('CREATE TABLE "NewWidgets" (Id INT)', "New%", True),  # EF's quoted name keeps its case
        ("CREATE TABLE NewGadgets (Id INT)", "New%", True),  # folded to newgadgets on PostgreSQL
        ("CREATE TABLE NewGadgets (Id INT)", "NEWGADGETS", True),
        ("CREATE TABLE Renewed (Id INT)", "New%", False),
        (None, "New%", False),
    ],
)
def test_verify_schema_counts_the_matching_tables_in_any_case(
    target_url: str, ddl: str | None, pattern: str, passes: bool
) -> None:
    """The check as planned for the target's dialect (SQLite's reads sqlite_master)."""
    target = Target("staging", create_engine(target_url))
    try:
        if ddl:
            with target.engine.begin() as conn:
                conn.execute(text(ddl))
        planned = _check().planned(4, target.dialect.name, {"new_tables": pattern})
        params = {"new_tables": pattern}
        result = target.check(planned.sql, params, expect=planned.expect, equals_sql=None)
    finally:
        target.engine.dispose()
    assert (result.passed, result.value) == (passes, 1 if passes else 0)


def test_verify_schema_on_sql_server_parses_as_t_sql() -> None:
    sql = _check().planned(4, "mssql", {"new_tables": "New%"}).sql
    tree = sqlglot.parse_one(re.sub(r":(\w+)", r"@\1", sql), read="tsql")
    assert tree.sql(dialect="tsql").startswith("SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES")
    assert "LOWER(TABLE_NAME) LIKE LOWER(@new_tables)" in tree.sql(dialect="tsql")
