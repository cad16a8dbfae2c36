"""Which table each planned step writes, and the rows a plan touches per table (pure).

A plan's steps often go over the same rows twice (copy them, then change them): adding their
counts would count those rows twice. The dry run shows rows per table written instead (a
journalled batch step writes its table and, a row per row changed, its journal).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.domain.planned import PlannedBatch, PlannedParallel, PlannedSql, PlannedStep

UNKNOWN = "unknown"
_NAME = (
    r"((?:[\w$#]+|\[[^\]]+\]|\"[^\"]+\"|`[^`]+`)(?:\.(?:[\w$#]+|\[[^\]]+\]|\"[^\"]+\"|`[^`]+`))*)"
)
_WRITES = re.compile(
    rf"\b(?:(insert)\s+(?:into\s+)?|(update)\s+|(delete)\s+(?:from\s+)?|(merge)\s+(?:into\s+)?)"
    rf"{_NAME}",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Write:
    """What a step writes: a table (or ``UNKNOWN``), and whether it only adds new rows."""

    table: str
    inserts: bool


@dataclass(frozen=True)
class TableRows:
    """The rows the plan touches in one table: ``rows`` None when a step writing it has no
    count; ``overlap`` when several steps change (not only add) its rows, so some rows may be
    counted twice and ``rows`` is an upper bound."""

    table: str
    rows: int | None
    steps: int
    overlap: bool


def writes(step: PlannedStep) -> Write | None:
    """The table ``step`` writes, or None for a kind that writes no table rows (checks,
    commands, backups, restores). An sql step's table is read from its first INSERT,
    UPDATE, DELETE or MERGE; ``UNKNOWN`` when there is none."""
    if isinstance(step, PlannedBatch | PlannedParallel):
        plan = step.batch
        return Write(plan.insert_into, True) if plan.insert_into else Write(plan.table, False)
    if isinstance(step, PlannedSql):
        found = sql_writes(step.sql)
        return found[0] if found else Write(UNKNOWN, False)
    return None


def sql_writes(sql: str) -> list[Write]:
    """Every table an SQL text writes (INSERT, UPDATE, DELETE, MERGE), in order."""
    return [
        Write(_unquote(found.group(5)), found.group(1) is not None)
        for found in _WRITES.finditer(_strip_comments(sql))
    ]


def rows_by_table(steps: Iterable[PlannedStep], counts: Mapping[str, int]) -> list[TableRows]:
    """The rows touched per table written, in the order the tables are first written."""
    tables: dict[str, list[tuple[Write, int | None]]] = {}
    for step in steps:
        for write in _every_write(step):
            tables.setdefault(write.table, []).append((write, counts.get(step.name)))
    result = []
    for table, entries in tables.items():
        known = [rows for _, rows in entries if rows is not None]
        rows = sum(known) if len(known) == len(entries) else None
        changing = sum(1 for write, _ in entries if not write.inserts)
        overlap = changing > 1 or (changing == 1 and len(entries) > 1)
        result.append(TableRows(table, rows, len(entries), overlap))
    return result


def _every_write(step: PlannedStep) -> list[Write]:
    """The step's table written, and its journal: one row added per row a journalled batch
    step updates."""
    write = writes(step)
    if write is None:
        return []
    journal = step.batch.journal if isinstance(step, PlannedBatch | PlannedParallel) else None
    return [write, *([Write(journal, True)] if journal else [])]


def _strip_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", " ", sql)


def _unquote(name: str) -> str:
    return ".".join(part.strip('[]"`') for part in name.split("."))
