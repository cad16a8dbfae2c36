"""Demo BARQ schema and deterministic seed data for SQLite, PostgreSQL and SQL Server targets.

Every table, column and index is declared with ``quote=False`` so the DDL uses bare identifiers.
PostgreSQL folds those to lowercase, which is what lets the runbooks' unquoted T-SQL such as
``UPDATE Tasks SET TenantId = 7 WHERE TenantId = 3`` run unchanged on every supported dialect.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Unicode,
    UnicodeText,
    create_engine,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL
from sqlalchemy.sql.elements import quoted_name

__all__ = [
    "audit_logs",
    "count_rows",
    "create_demo_database",
    "create_schema",
    "drop_schema",
    "load_tasks_bulk",
    "metadata",
    "roles",
    "seed_demo",
    "tasks",
    "tenants",
    "user_roles",
    "users",
]

# --------------------------------------------------------------------------- schema

metadata = MetaData()


def _col(name: str, *args: Any, **kwargs: Any) -> Column[Any]:
    """Build an unquoted column (``Id`` stays ``Id`` in DDL, never ``"Id"``)."""
    return Column(name, *args, quote=False, **kwargs)


def _table(name: str, *items: Any) -> Table:
    """Build an unquoted table registered on the module ``metadata``."""
    return Table(name, metadata, *items, quote=False)


def _index(name: str, *columns: Column[Any]) -> Index:
    """Build an index whose (PascalCase) name is emitted unquoted."""
    return Index(quoted_name(name, False), *columns)


# Long JSON text: TEXT on PostgreSQL/SQLite, NVARCHAR(max) (not the deprecated NTEXT) on mssql.
_JSON_TEXT = UnicodeText().with_variant(Unicode(), "mssql")

tenants = _table(
    "Tenants",
    _col("Id", Integer, primary_key=True),
    _col("Name", Unicode(100), nullable=False),
    _col("CreatedAt", DateTime, nullable=False),
)

users = _table(
    "Users",
    _col("Id", Integer, primary_key=True),
    _col("TenantId", Integer, ForeignKey("Tenants.Id"), nullable=False),
    _col("Email", Unicode(255), nullable=False),
    _col("FirstName", Unicode(100), nullable=False),
    _col("LastName", Unicode(100), nullable=False),
    _col("PhoneNumber", Unicode(30), nullable=True),
    _col("LegacyRole", Unicode(20), nullable=True),
    _col("LegacyPreferences", _JSON_TEXT, nullable=True),
    _col("Preferences", _JSON_TEXT, nullable=True),
    _col("CreatedAt", DateTime, nullable=False),
)

tasks = _table(
    "Tasks",
    _col("Id", Integer, primary_key=True),
    _col("TenantId", Integer, nullable=False),
    _col("Title", Unicode(200), nullable=False),
    _col("Status", Unicode(20), nullable=False),
    _col("DueDate", DateTime, nullable=True),
    _col("AssignedUserId", Integer, nullable=True),
    _col("CreatedAt", DateTime, nullable=False),
)

audit_logs = _table(
    "AuditLogs",
    _col("Id", Integer, primary_key=True),
    _col("TenantId", Integer, nullable=False),
    _col("EntityType", Unicode(50), nullable=False),
    _col("EntityId", Integer, nullable=False),
    _col("Action", Unicode(20), nullable=False),
    _col("OldValues", _JSON_TEXT, nullable=True),
    _col("NewValues", _JSON_TEXT, nullable=True),
    _col("CreatedAt", DateTime, nullable=False),
)

roles = _table(
    "Roles",
    _col("Id", Integer, primary_key=True),
    _col("Name", Unicode(50), nullable=False, unique=True),
)

user_roles = _table(
    "UserRoles",
    _col("UserId", Integer, nullable=False),
    _col("RoleId", Integer, nullable=False),
    _col("TenantId", Integer, nullable=False),
    _col("CreatedAt", DateTime, nullable=False),
    PrimaryKeyConstraint("UserId", "RoleId"),
)

_index("IX_Users_TenantId", users.c.TenantId)
_index("IX_Tasks_TenantId", tasks.c.TenantId)
_index("IX_AuditLogs_TenantId", audit_logs.c.TenantId)

# Tables whose single integer primary key is auto-generated (SERIAL / IDENTITY).
_IDENTITY_TABLES: tuple[Table, ...] = (tenants, users, tasks, audit_logs, roles)


def _existing_tables(conn: Connection) -> set[str]:
    """Lowercased names of the tables present in the connection's default schema."""
    return {name.lower() for name in inspect(conn).get_table_names()}


def create_schema(engine: Engine) -> None:
    """Create the BARQ demo tables and indexes that do not exist yet (idempotent).

    SQLAlchemy's own ``checkfirst`` compares names case-sensitively, which misses the
    lowercase-folded tables on PostgreSQL, so existence is checked case-insensitively here.
    """
    with engine.begin() as conn:
        present = _existing_tables(conn)
        missing = [t for t in metadata.sorted_tables if t.name.lower() not in present]
        if missing:
            metadata.create_all(conn, tables=missing, checkfirst=False)


def drop_schema(engine: Engine) -> None:
    """Drop the BARQ demo tables that exist (idempotent)."""
    with engine.begin() as conn:
        present = _existing_tables(conn)
        existing = [t for t in metadata.sorted_tables if t.name.lower() in present]
        if existing:
            metadata.drop_all(conn, tables=existing, checkfirst=False)


# --------------------------------------------------------------------------- demo data


@dataclass(frozen=True)
class _Company:
    name: str
    locale: str
    time_zone: str
    phone_prefix: str


_COMPANIES: tuple[_Company, ...] = (
    _Company("Acme Logistics", "en", "America/Chicago", "+1"),
    _Company("Lumière Conseil", "fr", "Europe/Paris", "+33"),
    _Company("Northwind Traders", "en", "America/New_York", "+1"),
    _Company("Müller Maschinenbau", "de", "Europe/Berlin", "+49"),
    _Company("Contoso Health", "en", "America/Los_Angeles", "+1"),
    _Company("Vega Energía", "es", "Europe/Madrid", "+34"),
    _Company("Fabrikam Retail", "en", "Europe/London", "+44"),
    _Company("Sakura Design Studio", "ja", "Asia/Tokyo", "+81"),
    _Company("Blue Harbor Finance", "en", "Australia/Sydney", "+61"),
    _Company("Nordlys Shipping", "nb", "Europe/Oslo", "+47"),
    _Company("Atelier Rousseau", "fr", "Europe/Paris", "+33"),
    _Company("Tailspin Aviation", "en", "America/Denver", "+1"),
    _Company("Casa Verde Imóveis", "pt", "America/Sao_Paulo", "+55"),
    _Company("Helvetia Precision", "de", "Europe/Zurich", "+41"),
    _Company("Greenfield Agritech", "en", "Europe/Dublin", "+353"),
    _Company("Orbital Robotics", "en", "America/Los_Angeles", "+1"),
)

_FIRST_NAMES: tuple[str, ...] = (
    "Emma", "Liam", "Olivia", "Noah", "Sophie", "Lucas", "Chloé", "Hugo", "Léa", "Jules",
    "Anna", "Jonas", "Lena", "Felix", "Marta", "Diego", "Lucía", "Mateo", "Yuki", "Haruto",
    "Ingrid", "Lars", "Grace", "Daniel", "Amelia", "Ethan", "Isabel", "Tomás", "Zoë", "Omar",
    "Priya", "Arjun", "Fatima", "Samuel", "Nora", "Oscar", "Clara", "Mohamed", "Elena", "Jürgen",
)  # fmt: skip

_LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Brown", "Martin", "Bernard", "Dubois", "Lefèvre", "Moreau", "Müller",
    "Schmidt", "Schneider", "Fischer", "García", "Fernández", "López", "Martínez", "Tanaka",
    "Suzuki", "Hansen", "Johansen", "Wilson", "Taylor", "Anderson", "Thomas", "Silva", "Santos",
    "Rossi", "Russo", "Kowalski", "Nowak", "O'Brien", "Murphy", "Khan", "Patel", "Nguyen",
    "Kim", "Cohen", "Novak", "Jensen", "Okafor",
)  # fmt: skip

_TASK_VERBS: tuple[str, ...] = (
    "Review", "Prepare", "Update", "Fix", "Schedule", "Draft", "Approve", "Migrate",
    "Audit", "Follow up on", "Document", "Plan",
)  # fmt: skip

_TASK_OBJECTS: tuple[str, ...] = (
    "supplier contract", "quarterly budget", "onboarding checklist", "customer invoice batch",
    "warehouse inventory report", "login timeout on mobile", "sprint retrospective",
    "security access review", "GDPR data request", "marketing campaign brief",
    "release notes", "payroll export", "shipping rates table", "support ticket backlog",
    "vendor due diligence", "board meeting agenda", "SLA dashboard", "expense reports",
    "product roadmap", "training materials",
)  # fmt: skip

_LOCALES: tuple[str, ...] = ("en", "fr", "de", "es", "pt", "ja", "nb")
_TIME_ZONES: tuple[str, ...] = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo")

_LEGACY_ROLES: tuple[str, ...] = ("Admin", "Manager", "User")
_LEGACY_ROLE_WEIGHTS: tuple[int, ...] = (8, 17, 75)
_ROLE_NAMES: tuple[str, ...] = ("Administrator", "StandardUser", "ProjectManager")

_CHUNK_SIZE = 1000


def _utc_naive(moment: datetime) -> datetime:
    """Return ``moment`` as a naive UTC datetime truncated to whole seconds."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def _ascii_slug(value: str, separator: str = "") -> str:
    """Lowercase ASCII slug of ``value`` (accents stripped, other characters dropped)."""
    plain = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", separator, plain.lower()).strip(separator)


def _company(index: int) -> tuple[_Company, str]:
    """Company profile and display name for the ``index``-th (0-based) tenant."""
    company = _COMPANIES[index % len(_COMPANIES)]
    cycle = index // len(_COMPANIES)
    name = company.name if cycle == 0 else f"{company.name} {cycle + 1}"
    return company, name


def _random_between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """Uniformly random whole-second moment in ``[start, end]``."""
    span = max(int((end - start).total_seconds()), 0)
    return start + timedelta(seconds=rng.randint(0, span))


def _build_tenants(rng: random.Random, count: int, now: datetime) -> list[dict[str, Any]]:
    """Tenant rows created between roughly four years and fourteen months ago."""
    rows = []
    for index in range(count):
        _, name = _company(index)
        created = _random_between(rng, now - timedelta(days=1500), now - timedelta(days=420))
        rows.append({"Id": index + 1, "Name": name, "CreatedAt": created})
    return rows


def _phone_number(rng: random.Random, prefix: str) -> str:
    """Plausible international phone number with the given country prefix."""
    digits = f"{rng.randint(200, 999)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
    return f"{prefix} {digits}"


def _legacy_preferences(rng: random.Random, company: _Company) -> str | None:
    """JSON preferences for about 70% of users; some older rows lack newer keys."""
    if rng.random() >= 0.7:
        return None
    prefs: dict[str, Any] = {
        "DarkMode": rng.random() < 0.4,
        "Locale": company.locale if rng.random() < 0.85 else rng.choice(_LOCALES),
        "TimeZone": company.time_zone if rng.random() < 0.85 else rng.choice(_TIME_ZONES),
        "EmailNotifications": rng.random() < 0.8,
        "PushNotifications": rng.random() < 0.35,
    }
    if rng.random() < 0.1:
        del prefs["PushNotifications"]
    return json.dumps(prefs)


def _unique_email(first: str, last: str, domain: str, seen: set[str]) -> str:
    """``first.last@domain`` in ASCII, numbered when already taken within the tenant."""
    local = f"{_ascii_slug(first)}.{_ascii_slug(last)}"
    email, suffix = f"{local}@{domain}", 2
    while email in seen:
        email, suffix = f"{local}{suffix}@{domain}", suffix + 1
    seen.add(email)
    return email


def _build_users(
    rng: random.Random, tenant_rows: Sequence[dict[str, Any]], per_tenant: int, now: datetime
) -> list[dict[str, Any]]:
    """User rows with sequential ids per tenant; the first user of each tenant is an Admin."""
    rows: list[dict[str, Any]] = []
    for index, tenant in enumerate(tenant_rows):
        company, _ = _company(index)
        domain = f"{_ascii_slug(tenant['Name'], '-')}.example"
        seen: set[str] = set()
        for position in range(per_tenant):
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            role = "Admin" if position == 0 else rng.choices(_LEGACY_ROLES, _LEGACY_ROLE_WEIGHTS)[0]
            phone = _phone_number(rng, company.phone_prefix) if rng.random() < 0.75 else None
            joined = _random_between(rng, tenant["CreatedAt"], now - timedelta(days=30))
            rows.append(
                {
                    "Id": len(rows) + 1,
                    "TenantId": tenant["Id"],
                    "Email": _unique_email(first, last, domain, seen),
                    "FirstName": first,
                    "LastName": last,
                    "PhoneNumber": phone,
                    "LegacyRole": role,
                    "LegacyPreferences": _legacy_preferences(rng, company),
                    "Preferences": None,
                    "CreatedAt": joined,
                }
            )
    return rows


def _task_status(rng: random.Random, due: datetime | None, now: datetime) -> str:
    """Status that is plausible for the task's due date (overdue tasks are mostly done)."""
    weights = (15, 10, 75) if due is not None and due < now else (50, 30, 20)
    return rng.choices(("Open", "InProgress", "Done"), weights)[0]


def _build_tasks(
    rng: random.Random,
    tenant_rows: Sequence[dict[str, Any]],
    user_rows: Sequence[dict[str, Any]],
    per_tenant: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Task rows created over the last year, due dates spread before and after ``now``."""
    users_by_tenant: dict[int, list[int]] = {}
    for user in user_rows:
        users_by_tenant.setdefault(user["TenantId"], []).append(user["Id"])
    rows: list[dict[str, Any]] = []
    for tenant in tenant_rows:
        members = users_by_tenant.get(tenant["Id"], [])
        for _ in range(per_tenant):
            created = _random_between(rng, now - timedelta(days=365), now - timedelta(hours=1))
            due = None
            if rng.random() >= 0.15:
                due = created + timedelta(days=rng.randint(1, 60))
                due = due.replace(hour=17, minute=0, second=0)
            title = f"{rng.choice(_TASK_VERBS)} {rng.choice(_TASK_OBJECTS)}"
            assignee = rng.choice(members) if members and rng.random() >= 0.1 else None
            rows.append(
                {
                    "Id": len(rows) + 1,
                    "TenantId": tenant["Id"],
                    "Title": title,
                    "Status": _task_status(rng, due, now),
                    "DueDate": due,
                    "AssignedUserId": assignee,
                    "CreatedAt": created,
                }
            )
    return rows


def _make_orphans(rng: random.Random, task_rows: list[dict[str, Any]], count: int) -> None:
    """Point ``count`` tasks at users that no longer exist (ids past the last user)."""
    max_user = max((row["AssignedUserId"] or 0 for row in task_rows), default=0)
    victims = rng.sample(range(len(task_rows)), min(count, len(task_rows)))
    for offset, index in enumerate(sorted(victims), start=1):
        task_rows[index]["AssignedUserId"] = max_user + 1000 + offset


def _task_snapshot(task: dict[str, Any]) -> str:
    """JSON of a freshly created task as an audit trail would record it."""
    due = task["DueDate"].isoformat() if task["DueDate"] else None
    values = {
        "Title": task["Title"],
        "Status": "Open",
        "DueDate": due,
        "AssignedUserId": task["AssignedUserId"],
    }
    return json.dumps(values)


def _status_path(rng: random.Random, status: str) -> list[str]:
    """Statuses a task went through after ``Open`` to reach ``status``."""
    if status == "Done" and rng.random() < 0.5:
        return ["InProgress", "Done"]
    return [] if status == "Open" else [status]


def _build_audit_logs(
    rng: random.Random, task_rows: Sequence[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Creation and status-change audit rows for each task, ids increasing with time."""
    entries: list[dict[str, Any]] = []
    for task in task_rows:
        base = {"TenantId": task["TenantId"], "EntityType": "Task", "EntityId": task["Id"]}
        created = {"Action": "Created", "OldValues": None, "NewValues": _task_snapshot(task)}
        entries.append({**base, **created, "CreatedAt": task["CreatedAt"]})
        previous = "Open"
        path = _status_path(rng, task["Status"])
        moments = sorted(_random_between(rng, task["CreatedAt"], now) for _ in path)
        for status, moment in zip(path, moments, strict=True):
            change = {
                "Action": "Updated",
                "OldValues": json.dumps({"Status": previous}),
                "NewValues": json.dumps({"Status": status}),
            }
            entries.append({**base, **change, "CreatedAt": moment})
            previous = status
    entries.sort(key=lambda row: (row["CreatedAt"], row["EntityId"]))
    for number, row in enumerate(entries, start=1):
        row["Id"] = number
    return entries


def _insert_chunked(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """executemany-insert ``rows`` into ``table`` in chunks of ``_CHUNK_SIZE``."""
    for start in range(0, len(rows), _CHUNK_SIZE):
        conn.execute(insert(table), list(rows[start : start + _CHUNK_SIZE]))


def _sync_pg_sequences(conn: Connection, tables: Iterable[Table]) -> None:
    """Move PostgreSQL SERIAL sequences past explicitly inserted ids."""
    for table in tables:
        name = table.name.lower()
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"COALESCE(MAX(Id), 0) + 1, false) FROM {table.name}"
            )
        )


def seed_demo(
    engine: Engine,
    *,
    tenants: int = 8,
    users_per_tenant: int = 25,
    tasks_per_tenant: int = 400,
    seed: int = 7,
    now: datetime,
    orphan_tasks: int = 3,
) -> dict[str, int]:
    """Insert deterministic, realistic demo data into an existing, empty BARQ schema.

    The same ``seed`` and ``now`` always produce the same rows. ``now`` is the reference
    moment for every generated date (aware values are converted to naive UTC). Users get
    ``LegacyRole``/``LegacyPreferences`` but no ``Preferences`` and no ``UserRoles`` rows
    (those are what a migration fills in); ``orphan_tasks`` tasks are assigned to users that
    do not exist, for the runbooks' integrity checks. Returns the row count per table.
    """
    now = _utc_naive(now)
    rng = random.Random(seed)
    tenant_rows = _build_tenants(rng, tenants, now)
    user_rows = _build_users(rng, tenant_rows, users_per_tenant, now)
    task_rows = _build_tasks(rng, tenant_rows, user_rows, tasks_per_tenant, now)
    _make_orphans(rng, task_rows, orphan_tasks)
    audit_rows = _build_audit_logs(rng, task_rows, now)
    role_rows = [{"Id": i, "Name": name} for i, name in enumerate(_ROLE_NAMES, start=1)]
    plan: list[tuple[Table, list[dict[str, Any]]]] = [
        (metadata.tables["Tenants"], tenant_rows),
        (roles, role_rows),
        (users, user_rows),
        (tasks, task_rows),
        (audit_logs, audit_rows),
        (user_roles, []),
    ]
    with engine.begin() as conn:
        for table, rows in plan:
            _insert_chunked(conn, table, rows)
        if conn.dialect.name == "postgresql":
            _sync_pg_sequences(conn, _IDENTITY_TABLES)
    return {table.name: len(rows) for table, rows in plan}


def create_demo_database(path: str | Path, *, now: datetime) -> str:
    """(Re)create a SQLite file at ``path`` with the schema and default seed; return its URL."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (file, *(file.with_name(file.name + s) for s in ("-journal", "-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    url = URL.create("sqlite", database=str(file.resolve())).render_as_string()
    engine = create_engine(url)
    try:
        create_schema(engine)
        seed_demo(engine, now=now)
    finally:
        engine.dispose()
    return url


# --------------------------------------------------------------------------- bulk load

_BULK_USERS_PER_TENANT = 25
_BULK_ANCHOR = "2025-01-01 00:00:00"
_BULK_COLUMNS = "Id, TenantId, Title, Status, DueDate, AssignedUserId, CreatedAt"


def _sql_case(expression: str, values: Sequence[str]) -> str:
    """``CASE expression % len(values) WHEN 0 THEN 'v0' ... END`` with escaped literals."""
    whens = " ".join(
        f"WHEN {i} THEN '{value.replace(chr(39), chr(39) * 2)}'" for i, value in enumerate(values)
    )
    return f"CASE {expression} % {len(values)} {whens} END"


def _bulk_insert_sql(source: str, created: str, due: str, prefix: str = "") -> str:
    """Dialect-neutral INSERT ... SELECT over a ``g`` integer series named by ``source``.

    ``h1``/``h2`` are multiplicative hashes of ``g`` (well-mixed bits 16..31), so status,
    title and dates look random yet are reproducible; ``m`` is an age in minutes (< 1 year).
    """
    title = f"{_sql_case('h1', _TASK_VERBS)} || ' ' || {_sql_case('h2', _TASK_OBJECTS)}"
    status = (
        "CASE WHEN h1 % 100 < 45 THEN 'Done' WHEN h1 % 100 < 75 THEN 'Open' ELSE 'InProgress' END"
    )
    assigned = (
        f"CASE WHEN h2 % 10 = 0 THEN NULL "
        f"ELSE (g % :tenants) * {_BULK_USERS_PER_TENANT} + 1 + h1 % {_BULK_USERS_PER_TENANT} END"
    )
    due_case = f"CASE WHEN h2 % 7 = 0 THEN NULL ELSE {due} END"
    hashes = (
        "SELECT g, (g * 2654435761) % 4294967296 / 65536 AS h1, "
        f"(g * 2246822519) % 4294967296 / 65536 AS h2 FROM {source}"
    )
    return (
        f"{prefix}INSERT INTO Tasks ({_BULK_COLUMNS}) "
        f"SELECT g, 1 + g % :tenants, {title}, {status}, {due_case}, {assigned}, {created} "
        f"FROM (SELECT g, h1, h2, (h1 * 16 + h2 % 16) % 525600 AS m FROM ({hashes}) AS r) AS s"
    )


def _postgresql_bulk_sql() -> str:
    """Bulk Tasks insert for PostgreSQL using ``generate_series``."""
    created = f"TIMESTAMP '{_BULK_ANCHOR}' - m * INTERVAL '1 minute'"
    due = f"{created} + (1 + h2 % 45) * INTERVAL '1 day'"
    return _bulk_insert_sql("generate_series(1, :rows) AS g", created, due)


def _sqlite_bulk_sql() -> str:
    """Bulk Tasks insert for SQLite using a recursive CTE (SQLAlchemy's datetime format)."""
    created = f"datetime('{_BULK_ANCHOR}', '-' || m || ' minutes') || '.000000'"
    due = (
        f"datetime('{_BULK_ANCHOR}', '-' || m || ' minutes', "
        "'+' || (1 + h2 % 45) || ' days') || '.000000'"
    )
    prefix = (
        "WITH RECURSIVE seq(g) AS (SELECT 1 WHERE :rows >= 1 "
        "UNION ALL SELECT g + 1 FROM seq WHERE g < :rows) "
    )
    return _bulk_insert_sql("seq", created, due, prefix)


def load_tasks_bulk(engine: Engine, rows: int, *, tenants: int = 50) -> None:
    """Replace the Tasks table's contents with ``rows`` generated tasks, server-side.

    Meant for benchmarks with millions of rows: ids are ``1..rows``, ``TenantId`` cycles over
    ``1..tenants`` and the other columns are reproducible pseudo-random values (dates within
    the year before 2025-01-01). Creates the schema if missing, then ANALYZEs the table.
    Supports PostgreSQL (``generate_series``) and SQLite (recursive CTE) only.
    """
    builders = {"postgresql": _postgresql_bulk_sql, "sqlite": _sqlite_bulk_sql}
    dialect = engine.dialect.name
    if dialect not in builders:
        raise ValueError(
            f"load_tasks_bulk is not implemented for the {dialect!r} dialect "
            f"(supported: {', '.join(sorted(builders))})"
        )
    if rows < 0 or tenants < 1:
        raise ValueError(f"need rows >= 0 and tenants >= 1, got rows={rows}, tenants={tenants}")
    create_schema(engine)
    params = {"rows": rows, "tenants": tenants}
    with engine.begin() as conn:
        if dialect == "postgresql":
            conn.execute(text("TRUNCATE TABLE Tasks"))
        else:
            conn.execute(text("DELETE FROM Tasks"))
        conn.execute(text(builders[dialect]()), params)
        if dialect == "postgresql":
            _sync_pg_sequences(conn, [tasks])
        conn.execute(text("ANALYZE Tasks"))


def count_rows(engine: Engine) -> dict[str, int]:
    """Row count of every BARQ demo table, keyed by its PascalCase name."""
    with engine.connect() as conn:
        return {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in metadata.sorted_tables
        }
