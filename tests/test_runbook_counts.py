"""Each shipped data runbook's plan counts what its steps change (issue 12, "Smaller").

Every test plans a runbook on a fresh demo BARQ database (SQLite and PostgreSQL) with
realistic parameters, runs it through the in-process bot (request, approve, settle), and
compares, step by step, the count the plan showed with the rows the step's run changed.
Where the demo seed lacks the case that made a count too large (users who already hold a
role, users already anonymized, users with empty legacy preferences, audit rows already
cleared, past retention or of a tenant that is gone), the test makes those rows with plain
SQL before planning. schema-deployment is not run: it has no counts (see its test).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text

from bot.adapters.runbook_files import load_runbook
from bot.domain.lifecycle import State
from bot.local.barq_schema import create_schema, seed_demo
from tests import harness
from tests.harness import Harness

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB = "U0ALICE", "U0BOB"
# the kinds of step that change rows, each of which must show a count in the plan
CHANGING = {"batch", "parallel"}
Setup = Callable[[Connection], None]
Demo = Callable[[Setup], Awaitable[Harness]]


@pytest.fixture
async def demo(tmp_path: Path, target_url: str) -> AsyncIterator[Demo]:
    """Starts the bot on a fresh demo database as staging, once the test's ``setup`` SQL
    has run on that database."""
    started: list[Harness] = []

    async def start(setup: Setup) -> Harness:
        engine = create_engine(target_url)
        try:
            create_schema(engine)
            seed_demo(engine, now=harness.now())
            with engine.begin() as conn:
                setup(conn)
        finally:
            engine.dispose()
        h = await harness.start(tmp_path, harness.policies(target_url), ROOT / "runbooks")
        started.append(h)
        return h

    yield start
    for h in started:
        await h.close()


async def _planned_and_changed(
    h: Harness, runbook: str, params: dict[str, str]
) -> tuple[dict[str, int], dict[str, int]]:
    """Plan ``runbook`` on staging, then request, approve and run it; return the plan's
    count per step and the rows each step run changed."""
    service = h.bot.service
    plan, counts = await service.plan(runbook, params, "staging")
    changing = {s.name for s in plan.steps if s.kind in CHANGING}
    assert changing <= set(counts), f"steps without a count: {sorted(changing - set(counts))}"
    m, _ = await service.request(ALICE, runbook, params, "staging")
    assert m.counts == counts
    await service.approve(m.id, BOB, m.plan.hash)
    await h.settle()
    done = h.bot.store.get(m.id)
    assert done.state is State.SUCCEEDED, done.error
    runs = h.bot.store.step_runs(m.id)
    return counts, {r.name: r.rows for r in runs if r.name in counts}


def _nothing(conn: Connection) -> None:
    """The demo data as seeded."""


async def test_tenant_consolidation_counts_the_rows_each_step_journals_and_moves(
    demo: Demo,
) -> None:
    """Journal and move steps select the source tenant's rows, as their counts do."""
    h = await demo(_nothing)
    planned, changed = await _planned_and_changed(
        h, "tenant-consolidation", {"source_tenant": "3", "target_tenant": "7"}
    )
    assert planned["move-tasks"] > 0 and planned["move-users"] > 0
    assert changed == planned


def _some_users_anonymized(conn: Connection) -> None:
    """Four of tenant 2's users were anonymized by hand already (as the step would), and
    three of its audit rows are past two years old, one of them cleared already."""
    dialect = conn.dialect.name
    email = (
        "CONCAT('user', Id, '@anonymized.com')"
        if dialect == "mssql"
        else ("'user' || Id || '@anonymized.com'")
    )
    conn.execute(
        text(
            f"UPDATE Users SET Email = {email}, FirstName = 'Anonymous', LastName = 'User',"
            " PhoneNumber = NULL WHERE Id IN (SELECT Id FROM Users WHERE TenantId = 2"
            " ORDER BY Id LIMIT 4)"
        )
    )
    old = (harness.now() - timedelta(days=3 * 365)).strftime("%Y-%m-%d %H:%M:%S")
    conn.execute(
        text(
            "UPDATE AuditLogs SET CreatedAt = :old WHERE Id IN"
            " (SELECT Id FROM AuditLogs WHERE TenantId = 2 ORDER BY Id LIMIT 3)"
        ),
        {"old": old},
    )
    conn.execute(
        text(
            "UPDATE AuditLogs SET OldValues = NULL, NewValues = NULL WHERE Id ="
            " (SELECT MIN(Id) FROM AuditLogs WHERE TenantId = 2)"
        )
    )


async def test_data_anonymization_counts_only_rows_not_anonymized_yet(
    demo: Demo,
) -> None:
    """Users already anonymized and audit rows already cleared are neither counted nor
    changed: 25 - 4 users, 3 - 1 audit rows."""
    h = await demo(_some_users_anonymized)
    planned, changed = await _planned_and_changed(h, "data-anonymization", {"tenant": "2"})
    assert planned == {"anonymize-users": 21, "clear-old-audit-values": 2}
    assert changed == planned


def _legacy_preferences_empty(conn: Connection) -> None:
    """Two users have an empty LegacyPreferences text: the hook leaves them alone."""
    conn.execute(
        text(
            "UPDATE Users SET LegacyPreferences = '' WHERE Id IN"
            " (SELECT Id FROM Users WHERE LegacyPreferences IS NOT NULL ORDER BY Id LIMIT 2)"
        )
    )


async def test_user_profile_updates_counts_the_rows_the_hook_reshapes(
    demo: Demo,
) -> None:
    """The transform hook decides per row (None leaves a row alone): it skips a row with
    empty legacy text, and the step's where and count leave those rows out as the hook
    does, so the count is exact rather than an upper bound."""
    h = await demo(_legacy_preferences_empty)
    legacy = h.count("staging", "SELECT COUNT(*) FROM Users WHERE LegacyPreferences IS NOT NULL")
    planned, changed = await _planned_and_changed(h, "user-profile-updates", {})
    assert planned["reshape-preferences"] == legacy - 2
    assert changed == planned


def _some_users_hold_roles(conn: Connection) -> None:
    """Five users already hold the role their legacy role maps to (they get no new pair),
    one holds a role other than its mapped one (it gets its mapped role too), one has no
    legacy role and one a legacy role the runbook does not know (neither gets a role)."""
    conn.execute(text("UPDATE Users SET LegacyRole = NULL WHERE Id = 4"))
    conn.execute(text("UPDATE Users SET LegacyRole = 'Guest' WHERE Id = 5"))
    conn.execute(
        text(
            "INSERT INTO UserRoles (UserId, RoleId, TenantId, CreatedAt)"
            " SELECT u.Id, r.Id, u.TenantId, CURRENT_TIMESTAMP FROM Users u JOIN Roles r"
            " ON r.Name = CASE u.LegacyRole WHEN 'Admin' THEN 'Administrator'"
            " WHEN 'User' THEN 'StandardUser' WHEN 'Manager' THEN 'ProjectManager' END"
            " WHERE u.Id IN (1, 2, 3, 26, 27)"
        )
    )
    conn.execute(
        text(
            "INSERT INTO UserRoles (UserId, RoleId, TenantId, CreatedAt)"
            " SELECT u.Id, r.Id, u.TenantId, CURRENT_TIMESTAMP FROM Users u JOIN Roles r"
            " ON r.Name = CASE u.LegacyRole WHEN 'Admin' THEN 'StandardUser'"
            " ELSE 'Administrator' END WHERE u.Id = 51"
        )
    )


async def test_role_migration_counts_users_who_get_a_new_role(
    demo: Demo,
) -> None:
    """Users who already hold their mapped role are skipped by the step, and by its count;
    a user holding another role is not."""
    h = await demo(_some_users_hold_roles)
    holding = h.count("staging", "SELECT COUNT(DISTINCT UserId) FROM UserRoles")
    assert holding == 6
    legacy = h.count(
        "staging", "SELECT COUNT(*) FROM Users WHERE LegacyRole IN ('Admin', 'User', 'Manager')"
    )
    assert legacy == h.count("staging", "SELECT COUNT(*) FROM Users") - 2
    planned, changed = await _planned_and_changed(h, "role-migration", {})
    assert planned == {"assign-roles": legacy - 5}
    assert changed == planned


def _audit_rows_past_retention(conn: Connection) -> None:
    """The seed's audit rows are all under a year old: date every tenth one back five years
    (some of those are creations, whose OldValues is NULL but NewValues is not: they are
    cleared too), clear one of them already, and leave one of a tenant that no longer exists
    (no branch covers it)."""
    old = (harness.now() - timedelta(days=5 * 365)).strftime("%Y-%m-%d %H:%M:%S")
    conn.execute(text("UPDATE AuditLogs SET CreatedAt = :old WHERE Id % 10 = 0"), {"old": old})
    conn.execute(
        text(
            "UPDATE AuditLogs SET OldValues = NULL, NewValues = NULL WHERE Id ="
            " (SELECT MIN(Id) FROM AuditLogs WHERE Id % 10 = 0 AND OldValues IS NOT NULL)"
        )
    )
    conn.execute(
        text(
            "UPDATE AuditLogs SET TenantId = 99 WHERE Id ="
            " (SELECT MAX(Id) FROM AuditLogs WHERE Id % 10 = 0 AND OldValues IS NOT NULL)"
        )
    )


async def test_audit_log_retention_counts_what_every_branch_clears(
    demo: Demo,
) -> None:
    """The parallel step's count covers every tenant's branch, and only rows with values
    left to clear (OldValues or NewValues)."""
    h = await demo(_audit_rows_past_retention)
    expired = h.count(
        "staging",
        "SELECT COUNT(*) FROM AuditLogs WHERE Id % 10 = 0"
        " AND (OldValues IS NOT NULL OR NewValues IS NOT NULL)",
    )
    creations = h.count(
        "staging",
        "SELECT COUNT(*) FROM AuditLogs WHERE Id % 10 = 0 AND OldValues IS NULL"
        " AND NewValues IS NOT NULL",
    )
    assert creations > 0
    orphaned = h.count("staging", "SELECT COUNT(*) FROM AuditLogs WHERE TenantId = 99")
    assert orphaned == 1
    planned, changed = await _planned_and_changed(h, "audit-log-retention", {"years": "3"})
    assert planned == {"clear-expired-values": expired - orphaned}
    assert changed == planned


def test_schema_deployment_has_no_counts() -> None:
    """schema-deployment is not run here: it backs up, then runs `dotnet ef` (command
    steps) and checks the new tables, so none of its steps changes rows the bot could count
    ahead; it has no count to compare with (tests/test_schema_deployment.py runs it)."""
    runbook = load_runbook(ROOT / "runbooks" / "schema-deployment.yaml")
    assert {s.kind for s in runbook.steps} == {"backup", "command", "check"}
