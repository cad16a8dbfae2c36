"""Which executor runs which kind of planned step."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bot.domain.control import StepOutcome
from bot.domain.planned import PlannedBase, kind_of
from bot.executors.context import StepContext

S = TypeVar("S", bound=PlannedBase)
Executor = Callable[[StepContext[S]], Awaitable[StepOutcome]]
_EXECUTORS: dict[str, Executor[Any]] = {}


def executes(step_type: type[S]) -> Callable[[Executor[S]], Executor[S]]:
    """Register the decorated coroutine function as the executor of ``step_type``'s steps."""

    def register(executor: Executor[S]) -> Executor[S]:
        _EXECUTORS[kind_of(step_type)] = executor
        return executor

    return register


def executor_for(kind: str) -> Executor[Any]:
    """The executor of steps of ``kind``."""
    return _EXECUTORS[kind]


def kinds() -> frozenset[str]:
    """The kinds that have an executor."""
    return frozenset(_EXECUTORS)
