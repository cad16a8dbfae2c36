"""SQL text in runbooks: one text for every dialect or one per dialect, and its parameters."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

DIALECTS = ("mssql", "postgresql", "sqlite")
BUILTIN_PARAMS = frozenset({"migration_id"})
NAME = r"^[a-z][a-z0-9-]{0,62}$"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
COLUMN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_EXPECT = re.compile(r"^(==|!=|>=|<=|>|<)\s*(-?\d+)$")

Dialect = Literal["mssql", "postgresql", "sqlite"]
SqlText = str | dict[Dialect, str]


class Model(BaseModel):
    """Base of runbook models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def bound_names(sql: str) -> set[str]:
    """Return the names of the ``:name`` bind parameters used in ``sql``."""
    return set(_BIND.findall(_strip_literals(sql)))


def _strip_literals(sql: str) -> str:
    """Blank out quoted literals and comments so that ':x' inside them is not a parameter."""
    return re.sub(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S)


def sql_for(sql: SqlText, dialect: str) -> str:
    """Pick the text of ``sql`` for ``dialect``; raise KeyError naming what is missing."""
    if isinstance(sql, str):
        return sql
    if dialect not in sql:
        raise KeyError(f"no SQL for dialect {dialect!r} (it has {', '.join(sorted(sql))})")
    return sql[dialect]  # type: ignore[index,unused-ignore]


def texts(sql: SqlText | None) -> list[str]:
    """Every dialect's text of ``sql``."""
    if sql is None:
        return []
    return [sql] if isinstance(sql, str) else list(sql.values())


def valid_expectation(expect: str) -> bool:
    """Whether ``expect`` reads like '== 0' or '> 10'."""
    return _EXPECT.match(expect.strip()) is not None


def compare(value: int | float, expect: str) -> bool:
    """Evaluate ``value`` against an expectation such as '== 0' or '> 10'."""
    match = _EXPECT.match(expect.strip())
    if match is None:
        raise ValueError(f"expect {expect!r} is not a comparison: write e.g. '== 0'")
    op, bound = match.group(1), int(match.group(2))
    return {
        "==": value == bound,
        "!=": value != bound,
        ">=": value >= bound,
        "<=": value <= bound,
        ">": value > bound,
        "<": value < bound,
    }[op]
