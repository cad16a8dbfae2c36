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

from pydantic import BaseModel, ConfigDict

from bot.domain.planned import BatchPlan, CommandPlan, ParamValue, PlannedStep, show
from bot.domain.runbook import Parameter, Runbook
from bot.domain.steps import AnyStep
from bot.errors import ParameterError

# The planned step types live in bot/domain/planned.py; the targets import these from here.
__all__ = [
    "BatchPlan",
    "CommandPlan",
    "ParamValue",
    "Plan",
    "PlannedStep",
    "build_plan",
    "coerce_params",
]

_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


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
        shown = " ".join(f"{k}={show(v)}" for k, v in sorted(self.params.items()))
        return shown or "no parameters"


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
            shown = ", ".join(f"{n}={show(values[n])}" for n in group)
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
        return step.planned(index, dialect, params)
    except KeyError as exc:
        raise ParameterError(
            f"step {step.name!r} cannot run on this target: {exc.args[0]}"
        ) from exc
