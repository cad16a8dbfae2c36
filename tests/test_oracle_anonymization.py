"""Oracle: data anonymization by the bot equals the runbook's "2. Data Anonymization" SQL.

Both copies hold the same realistic data plus edge rows: audit rows of the anonymized tenant (2)
and of another (3), older and newer than two years, with only OldValues, only NewValues, both or
neither; a user of tenant 2 anonymized already. The procedure's T-SQL (translated by sqlglot)
anonymizes tenant 2 on one copy, the bot's ``data-anonymization`` runbook on the other, and
every table is compared row for row.

The edge audit rows are three days from the two-year cut-off, never closer: sqlglot translates
the procedure's ``DATEADD(year, -2, GETDATE())`` for SQLite to ``DATE(CURRENT_TIMESTAMP, '-2
YEAR')``, a date, which moves its cut-off up to a day earlier than the bot's (a calendar
29 February moves it a day too); the exact instant is tested in tests/test_audit_clock.py.

The procedure as written does not run: its ``CONCAT('user', UserId, ...)`` names a column Users
does not have. The runbook documents that it means the user's Id; the test shows the failure,
then runs the procedure with that one correction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError

from tests import audit_edges, oracle

TENANT = 2


def _edges(now: datetime) -> oracle.Setup:
    """Audit rows of tenants 2 and 3 three days either side of two years before ``now`` (one
    moment for both copies), with each mix of values; user 26 (tenant 2) anonymized already,
    user 27 with no phone number."""
    moments = audit_edges.around(audit_edges.years_before(now, 2), timedelta(days=3))

    def setup(conn: Connection) -> None:
        audit_edges.add_audit_rows(conn, (TENANT, 3), moments)
        conn.execute(
            text(
                "UPDATE Users SET Email = 'user26@anonymized.com', FirstName = 'Anonymous',"
                " LastName = 'User', PhoneNumber = NULL WHERE Id = 26"
            )
        )
        conn.execute(text("UPDATE Users SET PhoneNumber = NULL WHERE Id = 27"))

    return setup


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


async def test_anonymization_equals_the_procedure(
    tmp_path: Path, twin_urls: tuple[str, str]
) -> None:
    """Tenant 2's users are anonymized and its audit rows older than two years lose both
    values, whichever they had; newer rows and tenant 3 keep theirs: as the procedure."""
    bot_url, procedure_url = twin_urls
    oracle.seed(twin_urls, _edges(audit_edges.utc_now()))
    params = {"TenantToAnonymize": TENANT}
    verbatim = oracle.procedure("2. Data Anonymization")
    with pytest.raises(DBAPIError, match=r"(?i)userid"):
        oracle.run_procedure(procedure_url, verbatim, params)

    wrong = "CONCAT('user', UserId, '@anonymized.com')"
    assert verbatim.count(wrong) == 1
    corrected = verbatim.replace(wrong, "CONCAT('user', Id, '@anonymized.com')")
    oracle.run_procedure(procedure_url, corrected, params)
    await oracle.run_bot(tmp_path, bot_url, "data-anonymization", {"tenant": str(TENANT)})
    oracle.assert_same_data(oracle.snapshot(bot_url), oracle.snapshot(procedure_url))

    # the edge rows ended as they were meant to: the comparison is not vacuous
    left = _rows(
        bot_url,
        "SELECT TenantId, EntityType FROM AuditLogs WHERE EntityType LIKE '%/%'"
        " AND (OldValues IS NOT NULL OR NewValues IS NOT NULL)",
    )
    valued = ["both", "new-only", "old-only"]
    kept = [(TENANT, f"newer/{k}") for k in valued]
    kept += [(3, f"{when}/{k}") for when in ("newer", "older") for k in valued]
    assert sorted(left) == sorted(kept)
    emails = _rows(bot_url, f"SELECT Id, Email FROM Users WHERE TenantId = {TENANT}")
    assert emails and all(email == f"user{i}@anonymized.com" for i, email in emails)
