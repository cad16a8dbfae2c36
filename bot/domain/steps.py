"""The kinds of runbook step, as declared in runbook YAML, each resolving itself into its
planned step (bot/domain/planned.py) for one dialect and set of parameters.

A new kind is one model here, with ``planned()``, added to ``Step``; its planned type; its
executor (bot/executors/); and its renderer (bot/adapters/step_text.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from bot.domain.batching import BatchSettings
from bot.domain.planned import (
    BatchPlan,
    CommandPlan,
    ParamValue,
    PlannedBackup,
    PlannedBatch,
    PlannedCheck,
    PlannedCommand,
    PlannedParallel,
    PlannedRestore,
    PlannedSql,
    show,
)
from bot.domain.sqltext import (
    COLUMN,
    IDENTIFIER,
    NAME,
    Model,
    SqlText,
    sql_for,
    texts,
    valid_expectation,
)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)\}")
TARGET_FIELDS = frozenset({"target.host", "target.port", "target.database", "target.user"})
SECRET_FIELDS = frozenset({"target.password", "target.connection_string"})


Params = Mapping[str, ParamValue]


def placeholders(text: str) -> set[str]:
    """The ``{name}`` placeholders of a command argument."""
    return set(_PLACEHOLDER.findall(text))


def _fill(text: str, values: dict[str, str]) -> str:
    """Fill ``{param}`` placeholders; leave ``{target.*}`` for run time."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _opt(sql: SqlText | None, dialect: str) -> str | None:
    return None if sql is None else sql_for(sql, dialect)


class _Step(Model):
    name: str = Field(pattern=NAME)
    description: str = ""
    timeout: float = Field(default=300.0, gt=0, le=86_400)

    def sql_texts(self) -> list[str]:
        """Every SQL text of the step, all dialects, for validation."""
        return []

    def _common(self, index: int) -> dict[str, Any]:
        """The fields every planned step has."""
        return {
            "index": index,
            "name": self.name,
            "description": self.description,
            "timeout": self.timeout,
        }


class SqlStep(_Step):
    """Statements run in one transaction on the target; ``count`` estimates rows touched."""

    kind: Literal["sql"]
    sql: SqlText
    count: SqlText | None = None
    retries: int = Field(default=3, ge=0, le=50, description="on transient errors")

    def sql_texts(self) -> list[str]:
        return texts(self.sql) + texts(self.count)

    def planned(self, index: int, dialect: str, params: Params) -> PlannedSql:
        """This step resolved for ``dialect``; a KeyError names SQL the dialect lacks."""
        return PlannedSql(
            **self._common(index),
            sql=sql_for(self.sql, dialect),
            count_sql=_opt(self.count, dialect),
            retries=self.retries,
        )


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
        if self.expect is not None and not valid_expectation(self.expect):
            raise ValueError(
                f"expect {self.expect!r} is not a comparison: write e.g. '== 0' or '> 0'"
            )
        return self

    def sql_texts(self) -> list[str]:
        return texts(self.sql) + texts(self.equals)

    def planned(self, index: int, dialect: str, params: Params) -> PlannedCheck:
        """This step resolved for ``dialect``."""
        return PlannedCheck(
            **self._common(index),
            sql=sql_for(self.sql, dialect),
            expect=self.expect,
            equals_sql=_opt(self.equals, dialect),
        )


class InsertChange(Model):
    """Copy or transform the batch's rows into another table."""

    into: str = Field(pattern=IDENTIFIER)
    columns: list[str] = Field(min_length=1)
    select: SqlText = Field(description="expressions over the source table, one per column")


class TransformChange(Model):
    """A Python function that reshapes each row: ``hook: file.py:function`` (in runbooks/)."""

    hook: str = Field(pattern=r"^[\w./-]+\.py:[A-Za-z_]\w*$")
    read: list[str] = Field(min_length=1)
    write: list[str] = Field(min_length=1)
    digest: str = Field(default="", description="sha256 of the hook's file, set by the loader")


class JournalOption(Model):
    """Journal the keys each batch updates, in the batch's own transaction: one row
    (migration_id, table_name, row_id) per updated row, in ``table`` on the target."""

    table: str = Field(default="barq_journal", pattern=IDENTIFIER)


class BatchStep(_Step):
    """Keyset-paginated work: each batch of keys in (last, next] is one short transaction
    that also writes its checkpoint (and, with ``journal``, the keys it updated)."""

    kind: Literal["batch"]
    table: str = Field(pattern=IDENTIFIER)
    key: str = Field(pattern=COLUMN)
    where: SqlText | None = None
    update: SqlText | None = Field(default=None, description="a SET clause")
    insert: InsertChange | None = None
    transform: TransformChange | None = None
    journal: JournalOption | None = Field(
        default=None,
        description="'true' or {table: ...}: journal the keys each batch updates, atomically",
    )
    journalled_only: JournalOption | None = Field(
        default=None,
        description="'true' or {table: ...}: change only the keys the run journalled there"
        " for this table (a rollback: the keys the run it undoes journalled)",
    )
    count: SqlText | None = None
    batch: BatchSettings = Field(default_factory=BatchSettings)
    retries: int = Field(default=5, ge=0, le=50)
    timeout: float = Field(default=60.0, gt=0, le=3600, description="per batch")

    @field_validator("journal", "journalled_only", mode="before")
    @classmethod
    def _journal_shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @model_serializer(mode="wrap")
    def _unset_journal_unsaid(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No ``journal`` (``journalled_only``) key when there is none: the runbook digests
        (and the plan hashes) of runbooks written before the options stay as they were."""
        dumped: dict[str, Any] = handler(self)
        for option in ("journal", "journalled_only"):
            if getattr(self, option) is None:
                dumped.pop(option, None)
        return dumped

    @model_validator(mode="after")
    def _one_change(self) -> BatchStep:
        given = [n for n in ("update", "insert", "transform") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "a batch step needs exactly one of 'update' (a SET clause), 'insert' (copy "
                f"into another table) or 'transform' (a Python hook); it has {given or 'none'}"
            )
        if self.journal is not None and self.update is None:
            raise ValueError(
                f"'journal' records the keys an 'update' changes, but this step has "
                f"'{given[0]}': journal with an update step, or drop 'journal'"
            )
        for column in [
            *(self.insert.columns if self.insert else []),
            *(self.transform.read + self.transform.write if self.transform else []),
        ]:
            if not re.match(COLUMN, column):
                raise ValueError(f"{column!r} is not a column name")
        return self

    def sql_texts(self) -> list[str]:
        found = texts(self.where) + texts(self.update) + texts(self.count)
        return found + (texts(self.insert.select) if self.insert else [])

    def planned(self, index: int, dialect: str, params: Params) -> PlannedBatch:
        """This step resolved for ``dialect``."""
        return PlannedBatch(
            **self._common(index),
            batch=self.batch_plan(dialect),
            count_sql=_opt(self.count, dialect),
        )

    def batch_plan(self, dialect: str) -> BatchPlan:
        """The table, key, condition and change of each batch, for ``dialect``."""
        return BatchPlan(
            table=self.table,
            key=self.key,
            where_sql=_opt(self.where, dialect),
            set_sql=_opt(self.update, dialect),
            insert_into=self.insert.into if self.insert else None,
            insert_columns=tuple(self.insert.columns) if self.insert else (),
            insert_select_sql=sql_for(self.insert.select, dialect) if self.insert else None,
            hook=self.transform.hook if self.transform else None,
            hook_digest=self.transform.digest if self.transform else "",
            read=tuple(self.transform.read) if self.transform else (),
            write=tuple(self.transform.write) if self.transform else (),
            journal=self.journal.table if self.journal else None,
            journalled_only=self.journalled_only.table if self.journalled_only else None,
            settings=self.batch,
            retries=self.retries,
        )


class ParallelStep(_Step):
    """One batch step fanned out over the keys a query returns, with bounded concurrency."""

    kind: Literal["parallel"]
    over: SqlText = Field(description="a query whose first column gives the branch keys")
    as_: str = Field(alias="as", pattern=COLUMN, description="the parameter bound to each key")
    concurrency: int = Field(default=4, ge=1, le=32)
    step: BatchStep

    def sql_texts(self) -> list[str]:
        return texts(self.over)

    def planned(self, index: int, dialect: str, params: Params) -> PlannedParallel:
        """This step resolved for ``dialect``."""
        return PlannedParallel(
            **self._common(index),
            batch=self.step.batch_plan(dialect),
            count_sql=_opt(self.step.count, dialect),
            over_sql=sql_for(self.over, dialect),
            branch_param=self.as_,
            concurrency=self.concurrency,
        )


class CommandStep(_Step):
    """An external program, run with an argument list (never a shell)."""

    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=600.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _no_secret_in_argv(self) -> CommandStep:
        for arg in self.argv:
            if placeholders(arg) & SECRET_FIELDS:
                raise ValueError(
                    f"argument {arg!r} would put a secret on the command line (visible to "
                    "every process); pass it in env instead"
                )
        return self

    def planned(self, index: int, dialect: str, params: Params) -> PlannedCommand:
        """This step with the parameters filled in (``{target.*}`` waits for run time)."""
        values = {k: show(v) for k, v in params.items()}
        command = CommandPlan(
            argv=tuple(_fill(a, values) for a in self.argv),
            env={k: _fill(v, values) for k, v in self.env.items()},
        )
        return PlannedCommand(**self._common(index), command=command)


class BackupStep(_Step):
    """Back up the target (or some tables), and verify the backup."""

    kind: Literal["backup"]
    tables: list[str] | None = None
    timeout: float = Field(default=3600.0, gt=0, le=86_400)

    def planned(self, index: int, dialect: str, params: Params) -> PlannedBackup:
        """This step as planned: which tables, if not all."""
        tables = tuple(self.tables) if self.tables else None
        return PlannedBackup(**self._common(index), tables=tables)


class RestoreStep(_Step):
    """Restore the migration's latest backup (usually a rollback step)."""

    kind: Literal["restore"]
    timeout: float = Field(default=3600.0, gt=0, le=86_400)

    def planned(self, index: int, dialect: str, params: Params) -> PlannedRestore:
        """This step as planned."""
        return PlannedRestore(**self._common(index))


Step = Annotated[
    SqlStep | CheckStep | BatchStep | ParallelStep | CommandStep | BackupStep | RestoreStep,
    Field(discriminator="kind"),
]
AnyStep = SqlStep | CheckStep | BatchStep | ParallelStep | CommandStep | BackupStep | RestoreStep
