""" "Older than N years" is the same instant on every dialect, whatever the server's time zone.

BARQ stores CreatedAt in UTC without a zone. data-anonymization and audit-log-retention take
their cut-off from the database server's clock in UTC (now() AT TIME ZONE 'UTC' on PostgreSQL,
datetime('now') on SQLite, SYSUTCDATETIME() on SQL Server). On PostgreSQL, now() alone is a
timestamptz, compared with the zone-less CreatedAt in the session's time zone: a server whose
zone is UTC+14 or UTC-11 would move the cut-off by that much. Audit rows three hours either side
of the UTC cut-off must fall on the right side of it under both zones, and the UserRoles rows
role-migration writes must be dated now in UTC.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, select, text

from bot.local.barq_schema import create_schema, seed_demo, user_roles
from tests import audit_edges, harness, oracle

ROOT = Path(__file__).resolve().parent.parent
ZONES = ["Pacific/Kiritimati", "Pacific/Pago_Pago"]  # UTC+14 and UTC-11, no daylight saving


@pytest.mark.parametrize("zone", ZONES)
async def test_the_cut_off_is_utc_whatever_the_servers_zone(
    tmp_path: Path, target_url: str, zone: str
) -> None:
    """Only the rows (with values) three hours older than two years are counted, by both
    runbooks, on a PostgreSQL server set to UTC+14 or UTC-11 (SQLite has no server zone:
    its clock is UTC)."""
    engine = create_engine(target_url)
    if engine.dialect.name == "sqlite" and zone != ZONES[0]:
        engine.dispose()
        pytest.skip("SQLite has no server time zone: one run covers it")
    try:
        create_schema(engine)
        seed_demo(engine, now=harness.now(), tenants=3, tasks_per_tenant=20)
        cut = audit_edges.years_before(audit_edges.utc_now(), 2)
        with engine.begin() as conn:
            audit_edges.add_audit_rows(conn, (1, 2), audit_edges.around(cut, timedelta(hours=3)))
            if engine.dialect.name == "postgresql":
                database = make_url(target_url).database
                conn.execute(text(f"ALTER DATABASE {database} SET timezone TO '{zone}'"))
    finally:
        engine.dispose()

    h = await harness.start(tmp_path, harness.policies(target_url), ROOT / "runbooks")
    try:
        service = h.bot.service
        if service.targets["staging"].target.dialect.name == "postgresql":
            session = (
                f"SELECT COUNT(*) FROM pg_settings WHERE name = 'TimeZone' AND setting = '{zone}'"
            )
            assert h.count("staging", session) == 1, "the bot's session is not in that zone"
        _, counts = await service.plan("data-anonymization", {"tenant": "2"}, "staging")
        # tenant 2's older rows with a value: old-only, new-only, both (the newer stay)
        assert counts["clear-old-audit-values"] == 3
        _, counts = await service.plan("audit-log-retention", {"years": "2"}, "staging")
        assert counts["clear-expired-values"] == 6  # the same, for tenants 1 and 2
    finally:
        await h.close()

    # and the (user, role) pairs role-migration writes are dated in UTC too
    await oracle.run_bot(tmp_path, target_url, "role-migration", {})
    engine = create_engine(target_url)
    try:
        with engine.connect() as conn:
            written = list(conn.execute(select(user_roles.c.CreatedAt)).scalars())
    finally:
        engine.dispose()
    now, slack = audit_edges.utc_now(), timedelta(minutes=5)
    assert written and now - slack < min(written) <= max(written) < now + slack
