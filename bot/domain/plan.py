"""Plans: a runbook resolved for one target with typed parameters, and its hash.

The plan hash covers the runbook's content, the parameters, the target and its dialect, so an
approval given for one plan cannot approve another. Row counts are not part of it: they are
estimates taken at planning time.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.domain.batching import BatchSettings
from bot.domain.runbook import Parameter, Runbook
from bot.domain.sqltext import SqlText, sql_for
from bot.domain.steps import (
    AnyStep,
    BackupStep,
    BatchStep,
    CheckStep,
    CommandStep,
    ParallelStep,
    SqlStep,
)
from bot.errors import ParameterError

ParamValue = int | str | bool
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


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
    settings: BatchSettings = BatchSettings()
    retries: int = 5


class CommandPlan(BaseModel):
    """A command with the runbook's parameters filled in; ``{target.*}`` is filled at run
    time, so the plan never holds the target's secrets."""

    model_config = ConfigDict(frozen=True)

    argv: tuple[str, ...]
    env: dict[str, str] = {}


class PlannedStep(BaseModel):
    """One step resolved for the target's dialect."""

    model_config = ConfigDict(frozen=True)

    index: int
    name: str
    kind: str
    description: str = ""
    sql: str = ""
    count_sql: str | None = None
    expect: str | None = None
    equals_sql: str | None = None
    timeout: float = 300.0
    batch: BatchPlan | None = None
    command: CommandPlan | None = None
    tables: tuple[str, ...] | None = None
    over_sql: str | None = None
    branch_param: str | None = None
    concurrency: int = 1
    retries: int = 0  # sql steps: whole-transaction retries on transient errors


class Plan(BaseModel):
    """What a migration will do, exactly; approvals bind to ``hash``."""

    model_config = ConfigDict(frozen=True)

    runbook: str
    description: str
    runbook_digest: str
    target: str
    dialect: str
    params: dict[str, ParamValue]
    steps: tuple[PlannedStep, ...]
    rollback: tuple[PlannedStep, ...]
    hash: str

    @property
    def short_hash(self) -> str:
        """The first 10 hex digits of the hash, as shown to people."""
        return self.hash[:10]

    def args(self) -> str:
        """The parameters as the user typed them: ``a=1 b=2``."""
        shown = " ".join(f"{k}={_show(v)}" for k, v in sorted(self.params.items()))
        return shown or "no parameters"


def _show(value: ParamValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def coerce_params(runbook: Runbook, raw: dict[str, str]) -> dict[str, ParamValue]:
    """Turn the user's ``name=value`` strings into typed, validated parameter values."""
    unknown = sorted(set(raw) - set(runbook.parameters))
    if unknown:
        hints = [_suggest(u, list(runbook.parameters)) for u in unknown]
        raise ParameterError(
            f"{runbook.name} has no parameter {', '.join(repr(u) for u in unknown)}"
            f"{''.join(hints)}. Its parameters are: {_usage(runbook)}"
        )
    missing = [name for name in runbook.parameters if name not in raw]
    if missing:
        raise ParameterError(
            f"missing {', '.join(missing)}: {runbook.name} needs {_usage(runbook)}"
        )
    values = {name: _coerce(name, param, raw[name]) for name, param in runbook.parameters.items()}
    for group in runbook.distinct:
        seen = [values[name] for name in group]
        if len(set(seen)) < len(seen):
            shown = ", ".join(f"{n}={_show(values[n])}" for n in group)
            raise ParameterError(f"{' and '.join(group)} must differ, but got {shown}")
    return values


def _usage(runbook: Runbook) -> str:
    return " ".join(f"{n}=<{p.type}>" for n, p in runbook.parameters.items())


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(name: str, param: Parameter, text: str) -> ParamValue:
    value: ParamValue
    if param.type == "int":
        if not re.fullmatch(r"[+-]?\d{1,18}", text.strip()):
            raise ParameterError(f"{name}={text!r} is not a whole number: write e.g. {name}=3")
        value = int(text)
        if param.min is not None and value < param.min:
            raise ParameterError(f"{name}={value} is below the minimum {param.min}")
        if param.max is not None and value > param.max:
            raise ParameterError(f"{name}={value} is above the maximum {param.max}")
    elif param.type == "bool":
        lowered = text.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise ParameterError(f"{name}={text!r} is not true or false")
        value = lowered in _TRUE
    else:
        value = text
        if param.choices is not None and text not in param.choices:
            raise ParameterError(f"{name}={text!r} is not one of {', '.join(param.choices)}")
        if param.pattern is not None and not re.fullmatch(param.pattern, text):
            raise ParameterError(f"{name}={text!r} does not match the pattern {param.pattern}")
    return value


def build_plan(runbook: Runbook, params: dict[str, ParamValue], target: str, dialect: str) -> Plan:
    """Resolve ``runbook`` for ``target`` (of ``dialect``) with already-coerced ``params``."""
    steps = tuple(_resolve(i, s, dialect, params) for i, s in enumerate(runbook.steps, 1))
    rollback = tuple(_resolve(i, s, dialect, params) for i, s in enumerate(runbook.rollback, 1))
    material = json.dumps(
        [runbook.digest, target, dialect, sorted(params.items())], sort_keys=True, default=str
    )
    return Plan(
        runbook=runbook.name,
        description=runbook.description,
        runbook_digest=runbook.digest,
        target=target,
        dialect=dialect,
        params=params,
        steps=steps,
        rollback=rollback,
        hash=hashlib.sha256(material.encode()).hexdigest(),
    )


def _resolve(index: int, step: AnyStep, dialect: str, params: dict[str, ParamValue]) -> PlannedStep:
    try:
        return PlannedStep(
            index=index,
            name=step.name,
            kind=step.kind,
            description=step.description,
            timeout=step.timeout,
            **_details(step, dialect, params),
        )
    except KeyError as exc:
        raise ParameterError(
            f"step {step.name!r} cannot run on this target: {exc.args[0]}"
        ) from exc


def _details(step: AnyStep, dialect: str, params: dict[str, ParamValue]) -> dict[str, Any]:
    if isinstance(step, SqlStep):
        return {
            "sql": sql_for(step.sql, dialect),
            "count_sql": _opt(step.count, dialect),
            "retries": step.retries,
        }
    if isinstance(step, CheckStep):
        return {
            "sql": sql_for(step.sql, dialect),
            "expect": step.expect,
            "equals_sql": _opt(step.equals, dialect),
        }
    if isinstance(step, BatchStep):
        return {"batch": _batch(step, dialect), "count_sql": _opt(step.count, dialect)}
    if isinstance(step, ParallelStep):
        return {
            "over_sql": sql_for(step.over, dialect),
            "branch_param": step.as_,
            "concurrency": step.concurrency,
            "batch": _batch(step.step, dialect),
            "count_sql": _opt(step.step.count, dialect),
        }
    if isinstance(step, CommandStep):
        values = {k: _show(v) for k, v in params.items()}
        return {
            "command": CommandPlan(
                argv=tuple(_fill(a, values) for a in step.argv),
                env={k: _fill(v, values) for k, v in step.env.items()},
            )
        }
    if isinstance(step, BackupStep):
        return {"tables": tuple(step.tables) if step.tables else None}
    return {}


def _opt(sql: SqlText | None, dialect: str) -> str | None:
    return None if sql is None else sql_for(sql, dialect)


def _batch(step: BatchStep, dialect: str) -> BatchPlan:
    return BatchPlan(
        table=step.table,
        key=step.key,
        where_sql=_opt(step.where, dialect),
        set_sql=_opt(step.update, dialect),
        insert_into=step.insert.into if step.insert else None,
        insert_columns=tuple(step.insert.columns) if step.insert else (),
        insert_select_sql=sql_for(step.insert.select, dialect) if step.insert else None,
        hook=step.transform.hook if step.transform else None,
        hook_digest=step.transform.digest if step.transform else "",
        read=tuple(step.transform.read) if step.transform else (),
        write=tuple(step.transform.write) if step.transform else (),
        settings=step.batch,
        retries=step.retries,
    )


def _fill(text: str, values: dict[str, str]) -> str:
    """Fill ``{param}`` placeholders; leave ``{target.*}`` for run time."""
    return re.sub(r"\{([A-Za-z_][\w.]*)\}", lambda m: values.get(m.group(1), m.group(0)), text)
