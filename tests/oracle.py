"""Oracle tests' tools: the runbook's own procedure against the bot's runbook, row for row.

An oracle test builds two identical copies of realistic BARQ data (:func:`seed`), runs the
procedure's own T-SQL, taken verbatim from the team's runbook (``tests/data/
data-migration-runbook.md``, :func:`procedure`) and translated by sqlglot (:func:`run_procedure`),
on one copy, runs the bot's runbook on the other (:func:`run_bot`), and compares every table row
for row (:func:`assert_same_data`). The bot's own tables (``barq_*``) are not part of the data.

Translation notes, the same for every procedure:
- ``@Name`` parameters become literals of the values given.
- ``CONCAT`` becomes ``||`` on SQLite (which has no CONCAT before 3.44), each argument
  ``COALESCE``d to '' as CONCAT treats NULL.
- The procedure runs in one transaction (its own BEGIN/COMMIT are dropped); statements that only
  read (its "verify" SELECTs) run too, and their results are ignored.
- The session's time zone is UTC on PostgreSQL, as BARQ stores UTC: ``GETDATE()`` is then the
  server's clock in the zone of the data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import sqlglot
from sqlalchemy import Connection, MetaData, create_engine, select, text
from sqlglot import exp

from bot.domain.lifecycle import State
from bot.domain.records import Migration, StepRun
from bot.local.barq_schema import create_schema, seed_demo
from tests import harness

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK_MD = Path(__file__).resolve().parent / "data" / "data-migration-runbook.md"
REQUESTER, APPROVER = "U0ALICE", "U0BOB"
Setup = Callable[[Connection], None]
Rows = dict[str, list[tuple[Any, ...]]]

__all__ = [
    "assert_same_data",
    "procedure",
    "run_bot",
    "run_bot_steps",
    "run_procedure",
    "seed",
    "snapshot",
    "translate",
]


def procedure(heading: str, language: str = "sql") -> str:
    """The first ``language`` code block under the runbook heading ``heading`` (e.g.
    "1. Tenant Consolidation"), exactly as the runbook has it."""
    source = RUNBOOK_MD.read_text(encoding="utf-8")
    start = re.search(rf"^#+ {re.escape(heading)}\s*$", source, re.MULTILINE)
    if start is None:
        raise LookupError(f"no heading {heading!r} in {RUNBOOK_MD.name}")
    block = re.compile(rf"^```{language}\n(.*?)^```", re.MULTILINE | re.DOTALL)
    found = block.search(source, start.end())
    if found is None:
        raise LookupError(f"no ```{language} block under {heading!r}")
    return found.group(1)


def _bind(tree: exp.Expression, params: Mapping[str, Any]) -> exp.Expression:
    def literal(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Parameter):
            name = node.name
            if name not in params:
                raise KeyError(f"the procedure uses @{name}, which the test does not give")
            return exp.convert(params[name])
        return node

    return tree.transform(literal)


def _sqlite_concat(node: exp.Expression) -> exp.Expression:
    if not isinstance(node, exp.Concat):
        return node
    parts = [
        exp.func("COALESCE", exp.cast(part, "TEXT"), exp.Literal.string(""))
        for part in node.expressions
    ]
    joined = parts[0]
    for part in parts[1:]:
        joined = exp.DPipe(this=joined, expression=part)
    return exp.paren(joined)


def translate(tsql: str, dialect: str, params: Mapping[str, Any]) -> list[str]:
    """The statements of ``tsql`` in ``dialect`` (an SQLAlchemy dialect name), with the
    ``@Name`` parameters bound to ``params``; transaction control is left out."""
    write = {"postgresql": "postgres"}.get(dialect, dialect)
    statements = []
    for tree in sqlglot.parse(tsql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE):
        if tree is None or isinstance(tree, exp.Transaction | exp.Commit):
            continue
        tree = _bind(tree, params)
        if dialect == "sqlite":
            tree = tree.transform(_sqlite_concat)
        statements.append(tree.sql(dialect=write))
    return statements


def run_procedure(url: str, tsql: str, params: Mapping[str, Any] | None = None) -> list[str]:
    """Run the procedure ``tsql`` on the database at ``url`` in one transaction; return the
    statements as run (for the failure message of a test)."""
    engine = create_engine(url)
    try:
        statements = translate(tsql, engine.dialect.name, params or {})
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL TIME ZONE 'UTC'"))
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
    return statements


def seed(urls: tuple[str, ...], *setups: Setup, **options: Any) -> None:
    """At each of ``urls``, the same data: the BARQ schema and the demo's realistic rows
    (several tenants, users with and without legacy roles and preferences, tasks, old and new
    audit logs, all from one ``now``), then each of ``setups`` (the test's edge rows) in one
    transaction. ``options`` go to seed_demo."""
    options = {"now": harness.now(), "tenants": 5, "tasks_per_tenant": 60, **options}
    for url in urls:
        engine = create_engine(url)
        try:
            create_schema(engine)
            seed_demo(engine, **options)
            with engine.begin() as conn:
                for setup in setups:
                    setup(conn)
        finally:
            engine.dispose()


def _sort_key(row: tuple[Any, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is None, repr(value)) for value in row)


def snapshot(url: str, ignore: Mapping[str, set[str]] | None = None) -> Rows:
    """Every row of every table at ``url`` except the bot's own (``barq_*``), sorted; keyed by
    lowercase table name, columns in name order, ``ignore`` (table -> columns) left out."""
    ignore = {t.lower(): {c.lower() for c in cs} for t, cs in (ignore or {}).items()}
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        rows: Rows = {}
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                name = table.name.lower()
                if name.startswith("barq_"):
                    continue
                skip = ignore.get(name, set())
                columns = sorted(
                    (c for c in table.columns if c.name.lower() not in skip),
                    key=lambda c: c.name.lower(),
                )
                found = conn.execute(select(*columns)).all()
                rows[name] = sorted((tuple(r) for r in found), key=_sort_key)
                rows[f"{name} columns"] = [tuple(c.name.lower() for c in columns)]
    finally:
        engine.dispose()
    return rows


def _differences(bot: list[tuple[Any, ...]], oracle: list[tuple[Any, ...]]) -> Iterator[str]:
    only_bot = [r for r in bot if r not in oracle]
    only_oracle = [r for r in oracle if r not in bot]
    for row in only_bot[:5]:
        yield f"  bot only:       {row}"
    for row in only_oracle[:5]:
        yield f"  procedure only: {row}"
    if len(bot) != len(oracle):
        yield f"  rows: bot {len(bot)}, procedure {len(oracle)}"


def assert_same_data(bot: Rows, oracle: Rows) -> None:
    """Fails naming each table whose rows differ, with a few rows from each side."""
    assert sorted(bot) == sorted(oracle), "the two databases do not have the same tables"
    lines = []
    for table in sorted(bot):
        if bot[table] != oracle[table]:
            lines.append(f"{table}:")
            lines.extend(_differences(bot[table], oracle[table]))
    assert not lines, "bot and procedure differ:\n" + "\n".join(lines)


async def run_bot(
    tmp_path: Path, url: str, runbook: str, params: Mapping[str, str], *, state: State | None = None
) -> Migration:
    """Request ``runbook`` on ``url`` (as staging) through the in-process bot, approve it,
    run it to the end and return the migration; it must end SUCCEEDED unless ``state`` says
    otherwise."""
    done, _ = await run_bot_steps(tmp_path, url, runbook, params, state=state)
    return done


async def run_bot_steps(
    tmp_path: Path, url: str, runbook: str, params: Mapping[str, str], *, state: State | None = None
) -> tuple[Migration, list[StepRun]]:
    """:func:`run_bot`, also returning the migration's step runs (their rows and details)."""
    folder = tmp_path / f"bot-{runbook}"
    folder.mkdir(exist_ok=True)
    h = await harness.start(folder, harness.policies(url), ROOT / "runbooks")
    try:
        service = h.bot.service
        m, _ = await service.request(REQUESTER, runbook, dict(params), "staging")
        await service.approve(m.id, APPROVER, m.plan.hash)
        await h.settle()
        done = h.bot.store.get(m.id)
        runs = h.bot.store.step_runs(m.id)
    finally:
        await h.close()
    expected = state or State.SUCCEEDED
    assert done.state is expected, f"{runbook} ended {done.state.value}: {done.error}"
    return done, runs
