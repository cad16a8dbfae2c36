"""Edge audit rows for the oracle tests of data anonymization and audit-log retention.

The demo's audit rows are all under a year old; these add, for each tenant asked, rows on both
sides of an "older than N years" cut-off, with each mix of values: only OldValues, only
NewValues, both, and none (already cleared).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert

from bot.local.barq_schema import audit_logs
from tests import harness

# (OldValues, NewValues) of each kind of row
VALUES = {
    "old-only": ('{"Status": "Open"}', None),
    "new-only": (None, '{"Status": "Done"}'),
    "both": ('{"Status": "Open"}', '{"Status": "Done"}'),
    "none": (None, None),
}


def years_before(moment: datetime, years: int) -> datetime:
    """``moment`` on the same day ``years`` years earlier (28 February for 29 February)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


def utc_now() -> datetime:
    """Now, in UTC without a zone and to the second, as BARQ stores CreatedAt."""
    return harness.now().replace(tzinfo=None, microsecond=0)


def add_audit_rows(conn: Connection, tenants: Iterable[int], moments: dict[str, datetime]) -> None:
    """For each tenant and each named moment, one row of each kind of ``VALUES``; the row's
    EntityType says its moment and kind (e.g. 'older/both'), so a failure says which."""
    rows = [
        {
            "TenantId": tenant,
            "EntityType": f"{when}/{kind}",
            "EntityId": tenant,
            "Action": "Updated",
            "OldValues": old,
            "NewValues": new,
            "CreatedAt": moment,
        }
        for tenant in tenants
        for when, moment in moments.items()
        for kind, (old, new) in VALUES.items()
    ]
    conn.execute(insert(audit_logs), rows)


def around(cut: datetime, margin: timedelta) -> dict[str, datetime]:
    """The moments ``margin`` before and after ``cut``."""
    return {"older": cut - margin, "newer": cut + margin}
