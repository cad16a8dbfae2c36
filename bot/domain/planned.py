"""Planned steps: each kind of runbook step resolved for one target's dialect and parameters.

Like the runbook's steps they form a pydantic union discriminated by ``kind``; plans are stored
as JSON and load back into the same types. A planned step holds only what its kind needs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.domain.batching import BatchSettings

ParamValue = int | str | bool


def show(value: ParamValue) -> str:
    """A parameter value as the user types it (booleans in lower case)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


class BatchPlan(BaseModel):
    """A batch step resolved for the dialect: the table, key, condition and change."""

    model_config = ConfigDict(frozen=True)

    table: str
    key: str
    where_sql: str | None = None
    set_sql: str | None = None
    insert_into: str | None = None
    insert_columns: tuple[str, ...] = ()
    insert_select_sql: str | None = None
    hook: str | None = None
    hook_digest: str = ""
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    journal: str | None = None  # the journal table of an update's keys, in its transaction
    journalled_only: str | None = None  # change only the keys this journal holds for the run
    settings: BatchSettings = BatchSettings()
    retries: int = 5


class CommandPlan(BaseModel):
    """A command with the runbook's parameters filled in; ``{target.*}`` is filled at run
    time, so the plan never holds the target's secrets."""

    model_config = ConfigDict(frozen=True)

    argv: tuple[str, ...]
    env: dict[str, str] = {}


class PlannedBase(BaseModel):
    """What every planned step has. Unknown keys are ignored, so plans stored before a field
    was dropped still load."""

    model_config = ConfigDict(frozen=True)

    index: int
    name: str
    kind: str
    description: str = ""
    timeout: float = 300.0
    count_sql: str | None = None  # estimates the rows the step touches, when planning


def kind_of(step_type: type[PlannedBase]) -> str:
    """The ``kind`` a planned step type stands for: its discriminator's value."""
    kind = step_type.model_fields["kind"].default
    if not isinstance(kind, str):
        raise TypeError(f"{step_type.__name__} has no default kind")
    return kind


class PlannedSql(PlannedBase):
    """Statements run in one transaction, retried whole on transient errors."""

    kind: Literal["sql"] = "sql"
    sql: str
    retries: int = 0


class PlannedCheck(PlannedBase):
    """A query whose value must meet ``expect`` or equal what ``equals_sql`` returns."""

    kind: Literal["check"] = "check"
    sql: str
    expect: str | None = None
    equals_sql: str | None = None


class PlannedBatch(PlannedBase):
    """Keyset batches over one table, each committed with its checkpoint."""

    kind: Literal["batch"] = "batch"
    batch: BatchPlan


class PlannedParallel(PlannedBase):
    """One batch plan run per key that ``over_sql`` returns, ``concurrency`` at a time."""

    kind: Literal["parallel"] = "parallel"
    batch: BatchPlan
    over_sql: str
    branch_param: str
    concurrency: int = 1


class PlannedCommand(PlannedBase):
    """An external program, run without a shell."""

    kind: Literal["command"] = "command"
    command: CommandPlan
    shown: CommandPlan | None = None  # as the dry run shows it: on its target, secrets masked


class PlannedBackup(PlannedBase):
    """A verified backup of the target, or of ``tables`` only."""

    kind: Literal["backup"] = "backup"
    tables: tuple[str, ...] | None = None


class PlannedRestore(PlannedBase):
    """Put back the migration's latest backup."""

    kind: Literal["restore"] = "restore"


PlannedStep = Annotated[
    PlannedSql
    | PlannedCheck
    | PlannedBatch
    | PlannedParallel
    | PlannedCommand
    | PlannedBackup
    | PlannedRestore,
    Field(discriminator="kind"),
]
