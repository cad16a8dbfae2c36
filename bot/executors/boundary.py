"""The step boundary: every error a step raises becomes that step's StepFailed here, and only
here (as httpx maps transport errors onto its own), so the engine catches one type::

    StepFailed                             as it is
    any other BarqError                    its message (BackupError, CommandFailed, ...)
    SQLAlchemyError, the driver's Error    the database's own message (no SQL, no password)
    OSError                                the OS's message, with the file
    ValueError                             its message, logged with its traceback: the
                                           targets refuse a changed or bad hook with it
    anything else                          logged with its traceback; the step fails with
                                           "internal error in the bot (Type: message); ..."

asyncio.CancelledError is not an Exception and passes through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.adapters.targets.target import error_message
from bot.errors import BarqError, StepFailed
from bot.executors.context import StepContext

logger = logging.getLogger(__name__)


@contextmanager
def step_boundary(ctx: StepContext[Any]) -> Iterator[None]:
    """Turn whatever the step raises inside the block into its StepFailed."""
    try:
        yield
    except StepFailed:
        raise
    except Exception as exc:
        raise StepFailed(ctx.step.name, describe(ctx, exc)) from exc


def describe(ctx: StepContext[Any], exc: Exception) -> str:
    """What the step failed with, when it (or one of its branches) raised ``exc``."""
    if isinstance(exc, StepFailed):
        return exc.message
    if isinstance(exc, BarqError):
        return str(exc)
    if isinstance(exc, SQLAlchemyError | ctx.target.engine.dialect.loaded_dbapi.Error):
        return error_message(exc)
    if isinstance(exc, OSError):
        return _os_message(exc)
    if isinstance(exc, ValueError):
        _log(logging.WARNING, ctx, exc, "was refused")
        return str(exc)
    _log(logging.ERROR, ctx, exc, "raised an unexpected error")
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"internal error in the bot ({what}); see its log"


def _log(level: int, ctx: StepContext[Any], exc: Exception, what: str) -> None:
    step = ctx.step
    logger.log(
        level,
        "migration %s: step %s (%s) %s",
        ctx.migration.id,
        step.index,
        step.name,
        what,
        exc_info=exc,
    )


def _os_message(exc: OSError) -> str:
    if not exc.strerror:
        return str(exc) or type(exc).__name__
    files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    return exc.strerror + (f": {' -> '.join(files)}" if files else "")
