"""A plan that cannot be made on the target is refused with the reason a person can act on:
the database's own message and which query failed, or which field the target's URL lacks; never
the SQL, the URL or a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.errors import QueryFailed, TargetFieldError
from tests import harness
from tests.harness import Harness

ALICE = "U0ALICE"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness.running(tmp_path, "staging", poll_seconds=3600) as started:
        yield started


def _alter(h: Harness, sql: str) -> None:
    engine = create_engine(h.bot.service.targets["staging"].target.engine.url)
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


async def test_a_failing_row_count_names_its_step_and_the_databases_message(h: Harness) -> None:
    """A column the count query reads was dropped: the plan says which step's count failed and
    what the database said, without the SQL echo."""
    _alter(h, "ALTER TABLE Users DROP COLUMN LegacyPreferences")
    reply = harness.text_of(await h.slash(ALICE, "plan user-profile-updates on=staging"))
    assert "something went wrong" not in reply
    assert "the row count of step 'reshape-preferences' failed on staging" in reply
    assert "no such column: LegacyPreferences" in reply
    assert "SELECT" not in reply and "[SQL:" not in reply


async def test_a_failing_exists_check_names_its_parameter(h: Harness) -> None:
    """The table an exists check reads is gone: the plan names the parameter."""
    _alter(h, "ALTER TABLE Tenants RENAME TO OldTenants")
    with pytest.raises(QueryFailed) as caught:
        await h.bot.service.plan(
            "tenant-consolidation", {"source_tenant": "3", "target_tenant": "7"}, "staging"
        )
    message = str(caught.value)
    assert "the exists check of parameter 'source_tenant' failed on staging" in message
    assert "no such table: Tenants" in message and "SELECT" not in message


async def test_a_placeholder_the_targets_url_cannot_fill_is_refused_at_plan_time(
    h: Harness,
) -> None:
    """A command step needs {target.connection_string}, which a SQLite target lacks: the
    plan and the request are refused naming the step, the field, the runbook, the target and
    what to do, not its URL."""
    reply = harness.text_of(
        await h.slash(ALICE, "request schema-deployment source_dir=src new_tables=New% on=staging")
    )
    assert "step 'apply-ef-migrations' cannot fill {target.connection_string}" in reply
    assert "schema-deployment needs a server target: target staging is SQLite" in reply
    assert "plan it on a PostgreSQL or SQL Server target" in reply
    assert "sqlite:" not in reply and "staging.db" not in reply
    assert h.bot.store.recent() == []
    with pytest.raises(TargetFieldError):
        await h.bot.service.plan(
            "schema-deployment", {"source_dir": "src", "new_tables": "New%"}, "staging"
        )
