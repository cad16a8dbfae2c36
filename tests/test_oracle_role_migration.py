"""Oracle: role migration by the bot equals the runbook's "2. Role Migration" SQL.

Both copies hold the same realistic data (five tenants, every user with a legacy role) plus the
edge rows below; the procedure's T-SQL (translated by sqlglot) runs on one, the bot's
``role-migration`` runbook on the other, and every table is compared row for row, except
``UserRoles.CreatedAt``: both set it to the moment they run (the procedure's GETDATE(), the
bot's CURRENT_TIMESTAMP), which differs by the seconds between the two runs.

Where the procedure is wrong, the test shows it and applies the runbook's documented correction
(see the header of runbooks/role-migration.yaml):
- a user who already holds the role its legacy role maps to would get that (user, role) pair a
  second time; UserRoles' primary key makes the procedure fail as a whole instead;
- a legacy role whose new role is missing from Roles: the procedure gives those users no role
  and drops the column they came from; the bot refuses the plan, naming the legacy role, the
  missing role and how many users have it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import IntegrityError

from bot.errors import QueryFailed, Refused
from tests import harness, oracle

IGNORE = {"UserRoles": {"CreatedAt"}}  # both write "now", seconds apart
MAPPED = (  # the role a user's legacy role maps to
    "CASE u.LegacyRole WHEN 'Admin' THEN 'Administrator' WHEN 'User' THEN 'StandardUser'"
    " WHEN 'Manager' THEN 'ProjectManager' END"
)
OTHER = "CASE u.LegacyRole WHEN 'Admin' THEN 'StandardUser' ELSE 'Administrator' END"


def _edge_users(conn: Connection) -> None:
    """Users 2 (tenant 1) and 27 (tenant 2) already hold a role other than the one their legacy
    role maps to (they get their mapped role too); user 3 has no legacy role and user 28 one the
    runbook does not know, 'Guest' (neither gets a role); users 4, 29 and 54 are Managers, so
    each legacy role is found in several of the five tenants."""
    conn.execute(text("UPDATE Users SET LegacyRole = NULL WHERE Id = 3"))
    conn.execute(text("UPDATE Users SET LegacyRole = 'Guest' WHERE Id = 28"))
    conn.execute(text("UPDATE Users SET LegacyRole = 'Manager' WHERE Id IN (4, 29, 54)"))
    conn.execute(
        text(
            "INSERT INTO UserRoles (UserId, RoleId, TenantId, CreatedAt)"
            " SELECT u.Id, r.Id, u.TenantId, CURRENT_TIMESTAMP FROM Users u JOIN Roles r"
            f" ON r.Name = {OTHER} WHERE u.Id IN (2, 27)"
        )
    )


def _holds_mapped_role(conn: Connection) -> None:
    """Users 1 (tenant 1) and 30 (tenant 2) already hold the role their legacy role maps to,
    as after a run that stopped half way."""
    conn.execute(
        text(
            "INSERT INTO UserRoles (UserId, RoleId, TenantId, CreatedAt)"
            " SELECT u.Id, r.Id, u.TenantId, CURRENT_TIMESTAMP FROM Users u JOIN Roles r"
            f" ON r.Name = {MAPPED} WHERE u.Id IN (1, 30)"
        )
    )


def _count(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def _columns(url: str, table: str) -> set[str]:
    return set(oracle.snapshot(url)[f"{table.lower()} columns"][0])


async def test_role_migration_equals_the_procedure(
    tmp_path: Path, twin_urls: tuple[str, str]
) -> None:
    """Users holding another role get their mapped role as well, NULL and unknown legacy
    roles get none, in every tenant, and the column is dropped: exactly as the procedure."""
    bot_url, procedure_url = twin_urls
    oracle.seed(twin_urls, _edge_users)
    held = "SELECT COUNT(*) FROM UserRoles WHERE UserId IN (2, 27)"
    assert _count(bot_url, held) == 2
    oracle.run_procedure(procedure_url, oracle.procedure("2. Role Migration"), {})
    await oracle.run_bot(tmp_path, bot_url, "role-migration", {})
    bot, procedure = oracle.snapshot(bot_url, IGNORE), oracle.snapshot(procedure_url, IGNORE)
    oracle.assert_same_data(bot, procedure)
    # the edge rows are what they were meant to be: the comparison is not vacuous
    assert "legacyrole" not in bot["users columns"][0]
    assert _count(bot_url, held) == 4  # their other role, and their mapped one
    assert _count(bot_url, "SELECT COUNT(*) FROM UserRoles WHERE UserId IN (3, 28)") == 0
    users = _count(bot_url, "SELECT COUNT(*) FROM Users")
    assert _count(bot_url, "SELECT COUNT(*) FROM UserRoles") == users - 2 + 2
    tenants = "SELECT COUNT(DISTINCT TenantId) FROM UserRoles"
    assert _count(bot_url, tenants) == 5

    # a second request finds no legacy role left to map: it is refused at plan time, naming
    # the first query that reads the dropped column
    h = await harness.start(tmp_path, harness.policies(bot_url), oracle.ROOT / "runbooks")
    try:
        with pytest.raises(QueryFailed) as again:
            await h.bot.service.plan("role-migration", {}, "staging")
    finally:
        await h.close()
    assert "the precondition 'administrator-role-exists' failed on staging" in str(again.value)
    assert "legacyrole" in str(again.value).lower()


async def test_a_user_holding_the_mapped_role_does_not_get_it_twice(
    tmp_path: Path, twin_urls: tuple[str, str]
) -> None:
    """The procedure's INSERT gives users 1 and 30 the pair they hold a second time, which
    UserRoles' primary key refuses: the procedure fails and changes nothing. With the bot's
    correction (skip a pair the user holds) it equals the bot's run, row for row."""
    bot_url, procedure_url = twin_urls
    oracle.seed(twin_urls, _edge_users, _holds_mapped_role)
    verbatim = oracle.procedure("2. Role Migration")
    with pytest.raises(IntegrityError):
        oracle.run_procedure(procedure_url, verbatim, {})
    assert _count(procedure_url, "SELECT COUNT(*) FROM UserRoles") == 4  # rolled back
    assert "legacyrole" in _columns(procedure_url, "Users")

    # the documented correction: pairs a user holds already are left out
    first, last = "WHERE u.LegacyRole = 'Admin'", "r.Name = 'ProjectManager';"
    assert verbatim.count(first) == 1 and verbatim.count(last) == 1
    guard = "NOT EXISTS (SELECT 1 FROM UserRoles ur WHERE ur.UserId = u.Id AND ur.RoleId = r.Id)"
    corrected = verbatim.replace(first, f"WHERE {guard}\n  AND (u.LegacyRole = 'Admin'")
    corrected = corrected.replace(last, "r.Name = 'ProjectManager');")
    oracle.run_procedure(procedure_url, corrected, {})
    await oracle.run_bot(tmp_path, bot_url, "role-migration", {})
    oracle.assert_same_data(
        oracle.snapshot(bot_url, IGNORE), oracle.snapshot(procedure_url, IGNORE)
    )
    pairs = "SELECT COUNT(*) FROM UserRoles WHERE UserId IN (1, 30)"
    assert _count(bot_url, pairs) == 2


async def test_a_missing_new_role_refuses_the_plan_naming_it(
    tmp_path: Path, twin_urls: tuple[str, str]
) -> None:
    """ProjectManager and StandardUser are missing from Roles: the plan (and the request) is
    refused naming each legacy role, its missing role and how many users have it, and nothing
    is recorded or changed. The procedure, on the other copy, silently gives those users no
    role and drops the column that said what they were: the reason for the refusal."""
    bot_url, procedure_url = twin_urls

    def drop_roles(conn: Connection) -> None:
        conn.execute(text("DELETE FROM Roles WHERE Name IN ('ProjectManager', 'StandardUser')"))

    oracle.seed(twin_urls, drop_roles)
    managers = _count(bot_url, "SELECT COUNT(*) FROM Users WHERE LegacyRole = 'Manager'")
    users = _count(bot_url, "SELECT COUNT(*) FROM Users WHERE LegacyRole = 'User'")
    assert managers > 0 and users > 0
    before = oracle.snapshot(bot_url)

    h = await harness.start(tmp_path, harness.policies(bot_url), oracle.ROOT / "runbooks")
    try:
        service = h.bot.service
        with pytest.raises(Refused) as planned:
            await service.plan("role-migration", {}, "staging")
        with pytest.raises(Refused) as requested:
            await service.request(oracle.REQUESTER, "role-migration", {}, "staging")
        assert h.bot.store.recent() == []
        reply = harness.text_of(
            await h.slash(oracle.REQUESTER, "request role-migration on=staging")
        )
    finally:
        await h.close()
    message = str(planned.value)
    assert str(requested.value) == message
    assert message.startswith("role-migration cannot be planned on staging: ")
    assert (
        f"{managers} user(s) have legacy role Manager, whose new role ProjectManager is missing"
        " from Roles: add the role ProjectManager to Roles, then request again" in message
    )
    assert f"{users} user(s) have legacy role User, whose new role StandardUser" in message
    assert "legacy role Admin" not in message
    assert f"{managers} user(s) have legacy role Manager, whose new role ProjectManager" in reply
    assert oracle.snapshot(bot_url) == before

    oracle.run_procedure(procedure_url, oracle.procedure("2. Role Migration"), {})
    admins = _count(bot_url, "SELECT COUNT(*) FROM Users WHERE LegacyRole = 'Admin'")
    assert _count(procedure_url, "SELECT COUNT(*) FROM UserRoles") == admins
    assert "legacyrole" not in _columns(procedure_url, "Users")
