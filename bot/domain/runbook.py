"""Runbook models: what a runbook file declares, validated with pydantic.

A runbook has typed parameters, the targets it may run on, ordered steps and rollback steps.
Step SQL is either one text for every dialect or one text per dialect (mssql, postgresql,
sqlite). Parameters reach SQL only as bound parameters (``:name``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DIALECTS = ("mssql", "postgresql", "sqlite")
BUILTIN_PARAMS = frozenset({"migration_id"})
NAME = r"^[a-z][a-z0-9-]{0,62}$"
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_EXPECT = re.compile(r"^(==|!=|>=|<=|>|<)\s*(-?\d+)$")

Dialect = Literal["mssql", "postgresql", "sqlite"]
SqlText = str | dict[Dialect, str]


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


def _texts(sql: SqlText | None) -> list[str]:
    if sql is None:
        return []
    return [sql] if isinstance(sql, str) else list(sql.values())


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Model):
    """A typed runbook parameter, e.g. a tenant id that must be positive and exist."""

    type: Literal["int", "str", "bool"]
    description: str = ""
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    choices: list[str] | None = None
    exists: SqlText | None = Field(
        default=None, description="a query bound with :value that must return a row"
    )
    exists_message: str = "no such value"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value


class _Step(_Model):
    name: str = Field(pattern=NAME)
    description: str = ""
    timeout: float = Field(default=300.0, gt=0, le=86_400)

    def sql_texts(self) -> list[str]:
        """Every SQL text of the step, all dialects, for validation."""
        raise NotImplementedError


class SqlStep(_Step):
    """Statements run in one transaction on the target; ``count`` estimates rows touched."""

    kind: Literal["sql"]
    sql: SqlText
    count: SqlText | None = None

    def sql_texts(self) -> list[str]:
        return _texts(self.sql) + _texts(self.count)


class CheckStep(_Step):
    """A query whose single value must meet ``expect`` (e.g. '== 0') or equal ``equals``."""

    kind: Literal["check"]
    sql: SqlText
    expect: str | None = None
    equals: SqlText | None = None

    @model_validator(mode="after")
    def _one_expectation(self) -> CheckStep:
        if (self.expect is None) == (self.equals is None):
            raise ValueError("a check needs exactly one of 'expect' (e.g. '== 0') or 'equals'")
        if self.expect is not None and not _EXPECT.match(self.expect.strip()):
            raise ValueError(
                f"expect {self.expect!r} is not a comparison: write e.g. '== 0' or '> 0'"
            )
        return self

    def sql_texts(self) -> list[str]:
        return _texts(self.sql) + _texts(self.equals)


Step = Annotated[SqlStep | CheckStep, Field(discriminator="kind")]


class Runbook(_Model):
    """A validated runbook: name, parameters, allowed targets, steps and rollback."""

    name: str = Field(pattern=NAME)
    description: str = Field(min_length=1, max_length=200)
    targets: list[str] = Field(min_length=1)
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    distinct: list[list[str]] = Field(
        default_factory=list, description="groups of parameters that must differ"
    )
    steps: list[Step] = Field(min_length=1)
    rollback: list[Step] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Runbook:
        for group in self.distinct:
            for name in group:
                if name not in self.parameters:
                    raise ValueError(f"distinct names {name!r}, which is not a parameter")
        for where, steps in (("steps", self.steps), ("rollback", self.rollback)):
            names = [s.name for s in steps]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{where}: step names must be unique; repeated: {dupes}")
            for step in steps:
                self._check_binds(f"{where}.{step.name}", step.sql_texts())
        for name, param in self.parameters.items():
            self._check_binds(f"parameters.{name}.exists", _texts(param.exists), {"value"})
        return self

    def _check_binds(self, where: str, texts: list[str], extra: set[str] | None = None) -> None:
        known = set(self.parameters) | BUILTIN_PARAMS | (extra or set())
        for text in texts:
            unknown = sorted(bound_names(text) - known)
            if unknown:
                raise ValueError(
                    f"{where} uses undeclared parameter(s) {', '.join(':' + u for u in unknown)}"
                )

    def allows_target(self, target: str) -> bool:
        """Whether the runbook may run on the named target."""
        return "*" in self.targets or target in self.targets

    @property
    def digest(self) -> str:
        """A content hash: any edit of the runbook changes it (and so every plan's hash)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


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
