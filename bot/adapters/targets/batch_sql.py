"""The SQL of a keyset batch step, built once per step (pure: no connection needed).

A batch covers the keys in ``[:_barq_from, :_barq_next]``: for integer keys that is
``(last, next]`` with ``_barq_from = last + 1`` (the lowest BIGINT on the first batch), so the
change statements need no NULL test and seek on the key. Every name the runner binds starts
with ``_barq_``, a prefix runbook parameters may not use. Identifiers are validated by the
dialect; runbook fragments (where, set, select) are trusted text from an approved runbook and
always sit on lines of their own, so a trailing ``--`` comment in one cannot swallow the range.

A journalled update (``BatchPlan.journal``) also writes (``:migration_id``, the table's name,
key) into the journal table for exactly the keys the UPDATE changed, in the same transaction:
as part of the UPDATE where the dialect can (``journal`` None), else by an INSERT ... SELECT
just before it (``journal``), whose count the runner checks against the UPDATE's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from bot.adapters.targets.dialect import Dialect, validate_column, where_clause
from bot.domain.plan import BatchPlan
from bot.domain.sqltext import bound_names

__all__ = [
    "FIRST_KEY",
    "FROM",
    "KEY",
    "LAST",
    "NEXT",
    "RESERVED_PREFIX",
    "SIZE",
    "BatchSql",
    "batch_sql",
    "hook_update_sql",
    "runbook_binds",
]

RESERVED_PREFIX = "_barq_"
LAST, SIZE = "_barq_last", "_barq_size"  # boundary query: key after LAST, SIZE rows
FROM, NEXT = "_barq_from", "_barq_next"  # change statements: key in [FROM, NEXT]
KEY = "_barq_key"  # hook row update
FIRST_KEY = -(2**63)  # _barq_from of the first batch: every BIGINT key is >= it
LAST_KEY = 2**63 - 1  # every BIGINT key is <= it
_SLOT = "barq_where_slot = 0"
_CHECKPOINT_KEY = "migration_id = :migration_id AND step = :step AND branch = :branch"


@dataclass(frozen=True)
class BatchSql:
    """Every statement one batch step runs; shown in plans and checked in tests."""

    kind: Literal["update", "insert", "hook"]
    next_key: str  # upper key of the next batch, or NULL when none is left
    change: str  # the UPDATE, the INSERT ... SELECT, or (hook) the SELECT of the rows
    journal: str | None  # journalled update: the journal's INSERT run just before ``change``
    journalled: bool  # the batch's keys are journalled (by ``journal`` or within ``change``)
    counted: bool  # ``change`` returns one row: (rows updated, rows journalled)
    journal_counted: bool  # ``journal`` returns the keys it journalled (no row: none)
    row_update: str | None  # hook only: the per-row UPDATE writing every ``write`` column
    remaining: str  # matching rows after :_barq_last (and journalled, with journalled_only)
    checkpoint_create: str  # insert the step's checkpoint row unless it exists
    checkpoint_claim: str  # first statement of a batch: lock the checkpoint row
    checkpoint_read: str
    checkpoint_write: str  # one more batch: the dialect's upsert, or SQL Server's UPDATE
    checkpoint_insert: str | None  # SQL Server: the INSERT when checkpoint_write found no row
    checkpoint_finish: str  # mark the step done (not a batch: ``batches`` stays)


def batch_sql(dialect: Dialect, plan: BatchPlan) -> BatchSql:
    """The statements of ``plan`` on ``dialect``; raises ValueError for a bad identifier."""
    table = dialect.checked_identifier(plan.table)
    key = validate_column(plan.key)
    cond = f"(\n{where_clause(plan.where_sql)}\n)"
    in_range = f"{key} >= :{FROM} AND {key} <= :{NEXT} AND {cond}"
    kind: Literal["update", "insert", "hook"]
    row_update = journal = None
    if plan.journal is not None and plan.set_sql is None:
        raise ValueError(f"batch step on {plan.table} journals, but only an update can journal")
    left = cond  # the rows left after :_barq_last, for progress
    if plan.journalled_only is not None:
        read = dialect.checked_identifier(plan.journalled_only)
        journalled_keys = dialect.journalled_keys_sql(key, read, table, f":{FROM}", f":{NEXT}")
        in_range = f"{in_range}\nAND {journalled_keys}"
        after_last = f"COALESCE(CAST(:{LAST} AS BIGINT) + 1, {FIRST_KEY})"
        left += f" AND {dialect.journalled_keys_sql(key, read, table, after_last, str(LAST_KEY))}"
    if plan.set_sql is not None:
        kind = "update"
        change = f"UPDATE {table} SET\n{plan.set_sql}\nWHERE {in_range}"
        if plan.journal is not None:
            journal, change = dialect.journalled_update_sql(
                table, key, plan.set_sql, in_range, dialect.checked_identifier(plan.journal), table
            )
    elif plan.insert_into is not None and plan.insert_select_sql is not None:
        kind = "insert"
        into = dialect.checked_identifier(plan.insert_into)
        columns = _columns(plan.insert_columns, "insert column")
        change = (
            f"INSERT INTO {into} ({columns})\nSELECT\n{plan.insert_select_sql}\n"
            f"FROM {table} WHERE {in_range}"
        )
    elif plan.hook is not None:
        kind = "hook"
        read = _columns(plan.read, "read column")
        change = f"SELECT {key}, {read} FROM {table} WHERE {in_range} ORDER BY {key}"
        row_update = hook_update_sql(dialect, plan, plan.write)
    else:
        raise ValueError(
            f"batch step on {plan.table} has no change: give it 'update', 'insert' or 'transform'"
        )
    cp = dialect.checkpoint_table
    checkpoint_write, checkpoint_insert = dialect.checkpoint_write_sql()
    return BatchSql(
        kind=kind,
        next_key=_rebound(dialect.next_key_sql(plan.table, key, _SLOT), cond),
        change=change,
        journal=journal,
        journalled=plan.journal is not None,
        counted=plan.journal is not None and dialect.journal_counts_in_change,
        journal_counted=journal is not None and dialect.journal_counts_in_journal,
        row_update=row_update,
        remaining=_rebound(dialect.remaining_count_sql(plan.table, key, _SLOT), left),
        checkpoint_create=(
            f"INSERT INTO {cp}"
            " (migration_id, step, branch, last_key, rows_done, batches, done, updated_at)"
            " SELECT s.migration_id, s.step, s.branch, CAST(NULL AS BIGINT), 0, 0, s.done, s.now"
            " FROM (SELECT :migration_id AS migration_id, :step AS step, :branch AS branch,"
            " :done AS done, :now AS now) AS s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {cp} AS c WHERE c.migration_id = s.migration_id"
            " AND c.step = s.step AND c.branch = s.branch)"
        ),
        checkpoint_claim=f"UPDATE {cp} SET updated_at = :now WHERE {_CHECKPOINT_KEY}",
        checkpoint_read=dialect.checkpoint_select_sql(),
        checkpoint_write=checkpoint_write,
        checkpoint_insert=checkpoint_insert,
        checkpoint_finish=(
            f"UPDATE {cp} SET done = :done, updated_at = :now WHERE {_CHECKPOINT_KEY}"
        ),
    )


def hook_update_sql(dialect: Dialect, plan: BatchPlan, columns: tuple[str, ...]) -> str:
    """UPDATE of one row by key, setting ``columns`` (a subset of ``plan.write``) bound as
    ``:_barq_w<i>``, where ``i`` is the column's position in ``plan.write``."""
    allowed = list(plan.write)
    sets = ", ".join(
        f"{validate_column(c)} = :{RESERVED_PREFIX}w{allowed.index(c)}" for c in columns
    )
    table = dialect.checked_identifier(plan.table)
    return f"UPDATE {table} SET {sets} WHERE {validate_column(plan.key)} = :{KEY}"


def runbook_binds(statements: BatchSql) -> set[str]:
    """The runbook parameters the statements bind (the runner's own ``_barq_`` names aside)."""
    names: set[str] = set()
    for sql in (statements.next_key, statements.change, statements.journal or ""):
        names |= bound_names(sql)
    return {n for n in names if not n.startswith(RESERVED_PREFIX)}


def _columns(columns: tuple[str, ...], what: str) -> str:
    if not columns:
        raise ValueError(f"a batch step needs at least one {what}")
    return ", ".join(validate_column(c) for c in columns)


def _rebound(skeleton: str, cond: str) -> str:
    """Rename the dialect's ``:last_key``/``:batch_size`` to the reserved names, then put the
    runbook's condition in the slot (after renaming, so its own binds stay untouched)."""
    sql = re.sub(r"(?<![:\w]):last_key\b", f":{LAST}", skeleton)
    sql = re.sub(r"(?<![:\w]):batch_size\b", f":{SIZE}", sql)
    slot = f"({_SLOT})"
    if sql.count(slot) != 1:
        raise RuntimeError(f"the dialect's keyset SQL lost its condition slot: {skeleton}")
    return sql.replace(slot, cond)
