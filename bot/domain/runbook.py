"""Runbook models: what a runbook file declares, validated with pydantic.

A runbook has typed parameters, the targets it may run on, preconditions (queries the target's
data must pass before a plan is made), ordered steps and rollback steps. Step SQL is either one
text for every dialect or one text per dialect (mssql, postgresql, sqlite). Parameters reach
SQL only as bound parameters (``:name``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bot.domain.sqltext import (
    BUILTIN_PARAMS,
    DIALECTS,
    NAME,
    Model,
    SqlText,
    bound_names,
    compare,
    sql_for,
    texts,
    valid_expectation,
)
from bot.domain.steps import (
    SECRET_FIELDS,
    TARGET_FIELDS,
    AnyStep,
    BatchStep,
    CheckStep,
    CommandStep,
    ParallelStep,
    SqlStep,
    Step,
    placeholders,
)
from bot.domain.windows import parse_duration

__all__ = [
    "DIALECTS",
    "BatchStep",
    "CheckStep",
    "CommandStep",
    "Parameter",
    "Precondition",
    "Runbook",
    "SqlStep",
    "bound_names",
    "compare",
    "sql_for",
]

_FIELD = re.compile(r"\{([A-Za-z_]\w*)\}")  # a {name} in a precondition's message


class Parameter(Model):
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


class Precondition(Model):
    """A query the target's data must pass before the runbook is planned, e.g. "no user has a
    legacy role whose new role is missing": its single value must meet ``expect``, or the plan
    (and so the request) is refused with ``message``, in which ``{value}`` is the value found
    and ``{name}`` the value of the parameter ``name``."""

    name: str = Field(pattern=NAME)
    sql: SqlText = Field(description="a query returning one value, bound with the parameters")
    expect: str = Field(default="== 0", description="e.g. '== 0' or '> 0'")
    message: str = Field(min_length=1, description="what is wrong and what to do about it")

    @field_validator("expect")
    @classmethod
    def _comparison(cls, value: str) -> str:
        if not valid_expectation(value):
            raise ValueError(f"expect {value!r} is not a comparison: write e.g. '== 0' or '> 0'")
        return value

    def refusal(self, value: object, params: Mapping[str, object]) -> str | None:
        """The message that refuses the plan when ``value`` (the query's, None for no row)
        fails ``expect``; None when it passes."""
        found = "no row" if value is None else str(value)
        try:
            number = 0.0 if value is None else float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):  # not a number: it cannot meet the expectation
            number = None
        if number is not None and compare(number, self.expect):
            return None
        shown = {**{k: str(v) for k, v in params.items()}, "value": found}
        message = " ".join(self.message.split())
        text = _FIELD.sub(lambda m: shown.get(m.group(1), m.group(0)), message)
        return f"{text} (precondition {self.name}: found {found}, expected {self.expect})"


class Runbook(Model):
    """A validated runbook: name, parameters, allowed targets, steps and rollback."""

    name: str = Field(pattern=NAME)
    description: str = Field(min_length=1, max_length=200)
    targets: list[str] = Field(min_length=1)
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    distinct: list[list[str]] = Field(
        default_factory=list, description="groups of parameters that must differ"
    )
    preconditions: list[Precondition] = Field(
        default_factory=list, description="checked on the target's data when the plan is made"
    )
    steps: list[Step] = Field(min_length=1)
    rollback: list[Step] = Field(default_factory=list)
    after_rollback: list[Step] = Field(
        default_factory=list,
        description="checks that the data is as it was before the change; they run as the last"
        " steps of a rollback, whose report says whether the data is back",
    )
    conflicts_on: list[str] | None = Field(
        default=None,
        description="the parameters that say which data a run changes: two runs conflict only"
        " when these values overlap (by default any two runs of the runbook on a target do)",
    )
    estimate: timedelta | None = Field(
        default=None,
        description="how long a run takes (4h, 90m), for placing it in a downtime window when"
        " no earlier run on the target says how fast its steps go",
    )
    on_conflict: Literal["refuse", "queue"] = Field(
        default="refuse",
        description="a request that conflicts with a pending or running migration is refused,"
        " or accepted and started once the other has finished",
    )

    @field_validator("estimate", mode="before")
    @classmethod
    def _estimate(cls, value: object) -> object:
        return None if value is None else parse_duration(value)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _consistent(self) -> Runbook:
        named = [("distinct", n) for group in self.distinct for n in group]
        for field, name in [*named, *(("conflicts_on", n) for n in self.conflicts_on or [])]:
            if name not in self.parameters:
                raise ValueError(f"{field} names {name!r}, which is not a parameter")
        for where, steps in (
            ("steps", self.steps),
            ("rollback", [*self.rollback, *self.after_rollback]),
        ):
            names = [s.name for s in steps]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{where}: step names must be unique; repeated: {dupes}")
            for step in steps:
                self._check_step(f"{where}.{step.name}", step)
        for step in self.after_rollback:
            if not isinstance(step, CheckStep):
                raise ValueError(
                    f"after_rollback.{step.name} is a {step.kind} step; only check steps may"
                    " follow a rollback (they say whether the data is back, and change nothing)"
                )
        if self.after_rollback and not self.rollback:
            raise ValueError("after_rollback checks need rollback steps to follow")
        for name, param in self.parameters.items():
            self._check_binds(f"parameters.{name}.exists", texts(param.exists), {"value"})
        names = [p.name for p in self.preconditions]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"preconditions: names must be unique; repeated: {dupes}")
        for pre in self.preconditions:
            where = f"preconditions.{pre.name}"
            self._check_binds(where, texts(pre.sql))
            unknown = set(_FIELD.findall(pre.message)) - set(self.parameters) - {"value"}
            if unknown:
                raise ValueError(
                    f"{where}.message uses {', '.join('{' + u + '}' for u in sorted(unknown))};"
                    " it may use {value} and the runbook's parameters"
                )
        return self

    def _check_step(self, where: str, step: AnyStep) -> None:
        self._check_binds(where, step.sql_texts())
        if isinstance(step, ParallelStep):
            if step.as_ in self.parameters:
                raise ValueError(f"{where}: 'as: {step.as_}' hides the parameter {step.as_!r}")
            self._check_binds(f"{where}.step", step.step.sql_texts(), {step.as_})
        if isinstance(step, CommandStep):
            allowed = set(self.parameters) | TARGET_FIELDS | BUILTIN_PARAMS
            for text in [*step.argv, *step.env.values()]:
                unknown = placeholders(text) - allowed - SECRET_FIELDS
                if unknown:
                    raise ValueError(
                        f"{where} uses undeclared placeholder(s) "
                        f"{', '.join('{' + u + '}' for u in sorted(unknown))}"
                    )

    def _check_binds(self, where: str, sql: list[str], extra: set[str] | None = None) -> None:
        known = set(self.parameters) | BUILTIN_PARAMS | (extra or set())
        for text in sql:
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
        """A content hash: any edit of the runbook (or its hooks) changes it."""
        unset = {k for k, v in _LATER_FIELDS.items() if getattr(self, k) == v}
        return hashlib.sha256(self.model_dump_json(exclude=unset).encode()).hexdigest()


# Fields added after runbooks were first approved: left at their default they do not change the
# digest, so requests made before the bot's upgrade keep their plan hash.
_LATER_FIELDS: dict[str, object] = {
    "conflicts_on": None,
    "on_conflict": "refuse",
    "after_rollback": [],
    "preconditions": [],
    "estimate": None,
}
