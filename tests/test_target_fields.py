"""What a command step's ``{target.*}`` becomes on each dialect: the URL's parts (SQL Server's
``odbc_connect`` string too) and ``{target.connection_string}`` in the dialect's ADO.NET form,
quoted as .NET reads it; SQLite is refused with what to do."""

from __future__ import annotations

import sys
from urllib.parse import quote_plus

import pytest
from sqlalchemy import make_url

from bot.adapters.commands import ado_value, fill_target, run_command, show_target
from bot.adapters.targets.dialects import dialect_for
from bot.domain.plan import CommandPlan
from bot.domain.planned import PlannedCommand
from bot.domain.steps import CommandStep
from bot.errors import TargetFieldError

FIELDS = "{target.host}|{target.port}|{target.database}|{target.user}"
PLAN = CommandPlan(
    argv=("tool", FIELDS), env={"PW": "{target.password}", "CONN": "{target.connection_string}"}
)


def _filled(url: str) -> tuple[str, str, str]:
    """(host|port|database|user, password, connection string) on a target at ``url``."""
    parsed = make_url(url)
    argv, env, _ = fill_target(PLAN, dialect_for(parsed).command_fields(parsed), "staging")
    return argv[1], env["PW"], env["CONN"]


def _odbc(raw: str) -> str:
    return "mssql+pyodbc:///?odbc_connect=" + quote_plus(raw)


@pytest.mark.parametrize(
    ("url", "fields", "password", "conn"),
    [
        (
            "mssql+pyodbc://sa:Str0ng;Pw@sql01:14330/barq"
            "?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes",
            "sql01|14330|barq|sa",
            "Str0ng;Pw",
            'Server=sql01,14330;Database=barq;User ID=sa;Password="Str0ng;Pw";'
            "TrustServerCertificate=True",
        ),
        (  # no port: SQL Server's default fills {target.port}, Server= names none
            "mssql+pyodbc://sa:pw@sql01/barq?driver=FreeTDS&Encrypt=no",
            "sql01|1433|barq|sa",
            "pw",
            "Server=sql01;Database=barq;User ID=sa;Password=pw;Encrypt=False",
        ),
        (
            _odbc(
                "DRIVER={ODBC Driver 18 for SQL Server};SERVER=tcp:sql01.corp,1444;"
                "DATABASE=BARQ_DB;UID=barq_app;PWD={p;w}}d};Encrypt=yes"
            ),
            "sql01.corp|1444|BARQ_DB|barq_app",
            "p;w}d",
            'Server=sql01.corp,1444;Database=BARQ_DB;User ID=barq_app;Password="p;w}d";'
            "Encrypt=True",
        ),
        (
            _odbc(
                "Driver=FreeTDS; Server=db ; Port=2433; Database=x; UID=u; PWD=p; TDS_Version=7.4"
            ),
            "db|2433|x|u",
            "p",
            "Server=db,2433;Database=x;User ID=u;Password=p",
        ),
        (
            "postgresql+psycopg://barq:s3cret@db.internal:5433/barq_prod?sslmode=verify-full",
            "db.internal|5433|barq_prod|barq",
            "s3cret",
            "Host=db.internal;Port=5433;Database=barq_prod;Username=barq;Password=s3cret;"
            "SSL Mode=VerifyFull",
        ),
        (
            "postgresql+psycopg://barq:it's@/barq?host=/run/postgresql",
            "/run/postgresql|5432|barq|barq",
            "it's",
            'Host=/run/postgresql;Port=5432;Database=barq;Username=barq;Password="it\'s"',
        ),
    ],
)
def test_each_server_dialect_fills_the_fields_and_its_connection_string(
    url: str, fields: str, password: str, conn: str
) -> None:
    assert _filled(url) == (fields, password, conn)


def test_a_connection_string_without_a_password_leaves_it_out() -> None:
    """Trust or integrated authentication: the string has no Password=."""
    parsed = make_url("postgresql+psycopg://barq@db/barq")
    plan = CommandPlan(argv=("tool",), env={"CONN": "{target.connection_string}"})
    _, env, _ = fill_target(plan, dialect_for(parsed).command_fields(parsed))
    assert env == {"CONN": "Host=db;Port=5432;Database=barq;Username=barq"}
    url = _odbc("DRIVER=FreeTDS;SERVER=db;DATABASE=x;Trusted_Connection=yes")
    parsed = make_url(url)
    _, env, _ = fill_target(plan, dialect_for(parsed).command_fields(parsed))
    assert env == {"CONN": "Server=db;Database=x;Integrated Security=True"}


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("a;b", '"a;b"'),
        ('say "hi"', '"say ""hi"""'),
        ("it's", '"it\'s"'),
        (" padded", '" padded"'),
        ("", '""'),
    ],
)
def test_connection_string_values_are_quoted_as_ado_net_reads_them(
    value: str, written: str
) -> None:
    assert ado_value(value) == written


def test_sqlite_fills_only_the_database_and_names_the_runbook_that_needs_a_server() -> None:
    url = make_url("sqlite:////var/barq/staging.db")
    fields = dialect_for(url).command_fields(url)
    argv, _, _ = fill_target(CommandPlan(argv=("sqlite3", "{target.database}")), fields)
    assert argv == ["sqlite3", "/var/barq/staging.db"]
    step = PlannedCommand(index=2, name="apply", command=PLAN)
    with pytest.raises(TargetFieldError) as caught:
        show_target([step], fields, "staging", "schema-deployment")
    assert str(caught.value) == (
        "step 'apply' cannot fill {target.host}: schema-deployment needs a server target: target"
        " staging is SQLite, which has no server (no host, port, user, password or connection"
        " string); plan it on a PostgreSQL or SQL Server target"
    )
    assert "/var/barq" not in str(caught.value)


def test_the_dry_run_form_masks_the_password_inside_the_connection_string() -> None:
    url = make_url("postgresql+psycopg://barq:s3cret@db/barq")
    step = PlannedCommand(index=1, name="apply", command=PLAN)
    (shown,) = show_target([step], dialect_for(url).command_fields(url), "staging")
    assert isinstance(shown, PlannedCommand) and shown.shown is not None
    assert shown.shown.argv == ("tool", "db|5432|barq|barq")
    assert shown.shown.env == {
        "PW": "***",
        "CONN": "Host=db;Port=5432;Database=barq;Username=barq;Password=***",
    }
    assert shown.command == PLAN  # what runs keeps its placeholders


def test_the_connection_string_is_a_secret_kept_off_the_command_line() -> None:
    with pytest.raises(ValueError, match="would put a secret on the command line"):
        CommandStep(kind="command", name="x", argv=["tool", "{target.connection_string}"])
    url = make_url("postgresql+psycopg://barq:s3cret@db/barq")
    plan = CommandPlan(argv=("tool", "--conn={target.connection_string}"))
    with pytest.raises(TargetFieldError, match="use env"):
        fill_target(plan, dialect_for(url).command_fields(url))


async def test_the_child_gets_the_connection_string_and_its_output_masks_the_password() -> None:
    """The password needs quoting: its quoted form is masked too, and the string whole."""
    url = make_url("mssql+pyodbc://sa@sql01/barq").set(password='pa"ss;')
    code = "import os; c = os.environ['CONN']; print(c); print(c.split('Password=')[1])"
    plan = CommandPlan(
        argv=(sys.executable, "-c", code), env={"CONN": "{target.connection_string}"}
    )
    argv, env, secrets = fill_target(plan, dialect_for(url).command_fields(url))
    assert env["CONN"] == 'Server=sql01;Database=barq;User ID=sa;Password="pa""ss;"'
    result = await run_command(argv, env=env, timeout=10, secrets=secrets)
    assert result.tail == ["***", "***"]
