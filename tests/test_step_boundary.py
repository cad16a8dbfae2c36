"""The step boundary: whatever a step's executor raises comes out as that step's StepFailed,
with the cause's own message; unexpected errors are logged with their traceback; a
cancellation passes through untouched."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot import executors
from bot.adapters.store import Store
from bot.adapters.targets.target import Target
from bot.domain.lifecycle import State
from bot.domain.progress import LiveProgress
from bot.domain.records import Migration
from bot.errors import BackupError, CommandFailed, StepFailed
from bot.executors import Control, StepContext, StepOutcome, registry
from tests.test_plan_steps import all_kinds_plan

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    target = Target.connect("staging", f"sqlite:///{tmp_path / 'target.db'}")
    yield target
    target.engine.dispose()


def _context(target: Target, tmp_path: Path) -> StepContext[object]:
    plan = all_kinds_plan()
    step = plan.steps[0]  # s1, a sql step
    m = Migration(
        7, "m-7", plan, {}, State.RUNNING, "U0ALICE", NOW, NOW, NOW, None, False, False, 1, None, []
    )
    return StepContext(
        migration=m,
        step=step,
        target=target,
        control=Control(),
        live=LiveProgress(step.index, step.name, step.kind, NOW),
        params={},
        clock=lambda: NOW,
        store=Store(create_engine(f"sqlite:///{tmp_path / 'state.db'}")),
        backup_dir=tmp_path / "backups",
        runbooks_dir=tmp_path / "runbooks",
    )


def _database_error(target: Target) -> Exception:
    with target.engine.connect() as conn:
        try:
            conn.execute(text("SELECT secret FROM no_such_table WHERE id = :id"), {"id": 1})
        except Exception as exc:
            return exc
    raise AssertionError("the query should have failed")


async def _failure(
    ctx: StepContext[object], error: BaseException, monkeypatch: pytest.MonkeyPatch
) -> str:
    async def executor(_ctx: StepContext[object]) -> StepOutcome:
        raise error

    monkeypatch.setitem(registry._EXECUTORS, "sql", executor)
    with pytest.raises(StepFailed) as failed:
        await executors.run(ctx)
    assert failed.value.step == "s1"
    return failed.value.message


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            StepFailed("s1", "check failed: got 1, expected == 0"),
            "check failed: got 1, expected == 0",
        ),
        (BackupError("pg_dump not found on PATH"), "pg_dump not found on PATH"),
        (
            CommandFailed("tool --x", 3, ["oops"]),
            "command `tool --x` exited with code 3; last 1 lines:\noops",
        ),
        (sqlite3.OperationalError("database is locked"), "database is locked"),
        (
            PermissionError(13, "Permission denied", "/var/backups/m-7"),
            "Permission denied: /var/backups/m-7",
        ),
        (
            OSError(18, "Invalid cross-device link", "a.db", None, "b.db"),
            "Invalid cross-device link: a.db -> b.db",
        ),
        (TimeoutError(), "TimeoutError"),
        (
            ValueError("hook file prefs.py changed since the plan was approved"),
            "hook file prefs.py changed since the plan was approved",
        ),
    ],
)
async def test_an_expected_error_fails_the_step_with_its_own_message(
    target: Target,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    message: str,
) -> None:
    """StepFailed as it is; a bot error, a driver error, an OS error or a refusal (ValueError)
    by its own message."""
    assert await _failure(_context(target, tmp_path), error, monkeypatch) == message


async def test_a_database_error_fails_the_step_without_the_sql_echo(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLAlchemy's errors give the database's own message, not the statement and its
    parameters."""
    error = _database_error(target)
    message = await _failure(_context(target, tmp_path), error, monkeypatch)
    assert message == "no such table: no_such_table"


async def test_an_unexpected_error_is_an_internal_error_logged_with_its_traceback(
    target: Target,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in the bot fails the step, naming the error, and leaves the traceback in the log."""
    with caplog.at_level(logging.ERROR, logger="bot.executors.boundary"):
        message = await _failure(
            _context(target, tmp_path), ZeroDivisionError("division by zero"), monkeypatch
        )
    assert message == "internal error in the bot (ZeroDivisionError: division by zero); see its log"
    (record,) = caplog.records
    assert record.getMessage() == "migration 7: step 1 (s1) raised an unexpected error"
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


async def test_a_cancellation_passes_through_the_boundary(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling the run's task is not a step failure."""

    async def executor(_ctx: StepContext[object]) -> StepOutcome:
        raise asyncio.CancelledError

    monkeypatch.setitem(registry._EXECUTORS, "sql", executor)
    with pytest.raises(asyncio.CancelledError):
        await executors.run(_context(target, tmp_path))
