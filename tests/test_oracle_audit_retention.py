"""Oracle: audit-log retention by the bot equals the anonymization's audit statement, run for
every tenant with the retention period in place of its two years.

The runbook has no procedure of its own: it is the "2. Data Anonymization" procedure's "Clear
sensitive audit data" UPDATE, taken from the runbook's text, with ``-2`` years replaced by
``-@Years`` and run once for each tenant of Tenants (``@TenantToAnonymize`` bound to each id),
translated by sqlglot as every procedure is. Both copies hold the same realistic data plus edge
rows: in tenants 1, 3 and 5, audit rows older and newer than three years with only OldValues,
only NewValues, both or neither; and old rows of a tenant (99) that is not in Tenants, which no
run of the statement (and no branch of the bot's parallel step) covers. Every table is then
compared row for row.

The edge rows are three days from the cut-off, never closer: sqlglot translates ``DATEADD(year,
-3, GETDATE())`` for SQLite to ``DATE(CURRENT_TIMESTAMP, '-3 YEAR')``, a date, which moves the
procedure's cut-off up to a day earlier than the bot's (a calendar 29 February moves it a day
too); the exact instant is tested in tests/test_audit_clock.py.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, create_engine, text

from tests import audit_edges, oracle

YEARS = 3
ORPHAN = 99  # a tenant id not in Tenants


def retention_procedure() -> str:
    """The anonymization's "Clear sensitive audit data" statement with ``@Years`` years."""
    source = oracle.procedure("2. Data Anonymization")
    found = re.search(r"^-- Clear sensitive audit data\n(.*?;)", source, re.MULTILINE | re.DOTALL)
    assert found is not None, "the anonymization procedure lost its audit statement"
    statement = found.group(1)
    assert statement.count("DATEADD(year, -2, GETDATE())") == 1
    return statement.replace("DATEADD(year, -2, GETDATE())", "DATEADD(year, -@Years, GETDATE())")


def _edges(now: datetime) -> oracle.Setup:
    """Audit rows three days either side of three years before ``now`` (one moment for both
    copies), with each mix of values, in tenants 1, 3 and 5 and in the tenant 99, which is
    not in Tenants."""
    moments = audit_edges.around(audit_edges.years_before(now, YEARS), timedelta(days=3))

    def setup(conn: Connection) -> None:
        audit_edges.add_audit_rows(conn, (1, 3, 5, ORPHAN), moments)

    return setup


def _column(url: str, sql: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)).scalars())
    finally:
        engine.dispose()


async def test_retention_equals_the_audit_statement_for_every_tenant(
    tmp_path: Path, twin_urls: tuple[str, str]
) -> None:
    """Every tenant's audit rows older than three years lose both values, whichever they had
    (rows with only NewValues too); newer rows keep theirs, and so do the rows of a tenant not
    in Tenants: as the statement run for each tenant."""
    bot_url, procedure_url = twin_urls
    oracle.seed(twin_urls, _edges(audit_edges.utc_now()))
    statement = retention_procedure()
    for tenant in _column(procedure_url, "SELECT Id FROM Tenants ORDER BY Id"):
        oracle.run_procedure(
            procedure_url, statement, {"TenantToAnonymize": tenant, "Years": YEARS}
        )
    done = await oracle.run_bot(tmp_path, bot_url, "audit-log-retention", {"years": str(YEARS)})
    oracle.assert_same_data(oracle.snapshot(bot_url), oracle.snapshot(procedure_url))

    # the edge rows ended as they were meant to: the comparison is not vacuous
    left = _column(
        bot_url,
        "SELECT EntityType FROM AuditLogs WHERE EntityType LIKE '%/%'"
        f" AND TenantId <> {ORPHAN} AND (OldValues IS NOT NULL OR NewValues IS NOT NULL)",
    )
    assert sorted(left) == sorted(
        f"newer/{kind}" for kind in ("both", "new-only", "old-only") for _ in range(3)
    )
    orphan = f"SELECT COUNT(*) FROM AuditLogs WHERE TenantId = {ORPHAN} AND NewValues IS NOT NULL"
    assert _column(bot_url, orphan) == [4]  # older and newer, new-only and both
    assert done.counts == {"clear-expired-values": 9}  # old-only, new-only, both in 3 tenants
