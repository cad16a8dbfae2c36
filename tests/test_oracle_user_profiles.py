"""Oracle: user-profile-updates by the bot equals the runbook's C# "User Profile Updates".

Both copies hold the same realistic users plus edge rows (non-ASCII and HTML-sensitive text,
'' and NULL legacy text, missing, empty, null, wrong-cased, repeated and unknown keys). The C#
procedure, transcribed into Python (tests/csharp_user_preferences.py), runs on one copy; the
bot's runbook with its shipped hook runs on the other; every table is then compared row for
row. With invalid legacy rows added, the procedure throws and saves nothing, while the bot
leaves exactly those rows unchanged, reports them by id, and otherwise equals the procedure run
on the valid rows only; its no-legacy-left check passes, and fails for a row it did not report.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Connection, create_engine, text

from tests import csharp_user_preferences as csharp
from tests import oracle

RUNBOOK = "user-profile-updates"
JOINED = datetime(2024, 5, 1, 9, 30)  # the edge users' CreatedAt, the same on both copies
_ROWS = "(Id, TenantId, Email, FirstName, LastName, LegacyPreferences, Preferences, CreatedAt)"
VALID: dict[int, tuple[str | None, str | None]] = {  # Id: (LegacyPreferences, Preferences)
    900001: (
        '{"DarkMode": true, "Locale": "zh-Hant-TW 中文", "TimeZone": "América/São_Paulo",'
        ' "EmailNotifications": true, "PushNotifications": true}',
        None,
    ),
    900002: ('{"Locale": "<b>&\'+`\\"\\\\</b> 😀", "TimeZone": "Europe/Zürich\\u2028"}', None),
    900003: ("", None),  # string.IsNullOrEmpty: left alone
    900004: (None, '{"Theme":"dark"}'),  # no legacy data: left alone
    900005: ("{}", None),
    900006: ('{"DarkMode": true}', None),  # missing keys take their defaults
    900007: ('{"Locale": "", "TimeZone": ""}', None),  # '' is kept: ?? replaces only null
    900008: ('{"Locale": null, "TimeZone": null, "DarkMode": false}', None),
    900009: ('{"darkMode": true, "locale": "fr", "Timezone": "Asia/Tokyo"}', None),  # casing
    900010: (
        '{"DarkMode": false, "Theme": "dark", "Extra": {"a": [1, 2.5, null, {"x": "\\ud800"}]},'
        ' "EmailNotifications": true}',
        None,
    ),
    900011: ('{"Locale": "fr", "Locale": "it", "Dark\\u004Dode": true}', None),
    900012: (' \n{"PushNotifications" : true}\t', '{"Theme":"stale"}'),  # overwritten
}
INVALID: dict[int, str] = {
    900101: "not json",
    900102: '{"DarkMode": "yes"}',
    900103: '{"Locale": 5}',
    900104: '{"EmailNotifications": null}',
    900105: "[1, 2]",
    900106: "null",
    900107: '{"DarkMode": true,}',
    900108: "   ",
    900109: '{"Locale": "\\ud800"}',
}
THROWS = (
    csharp.JsonException,
    csharp.InvalidOperationException,
    csharp.NullReferenceException,
)


def _users(rows: dict[int, tuple[str | None, str | None]]) -> oracle.Setup:
    def setup(conn: Connection) -> None:
        conn.execute(
            text(
                f"INSERT INTO Users {_ROWS} VALUES (:id, 1, :email, 'Edge', 'Case', :legacy,"
                " :prefs, :at)"
            ),
            [
                {
                    "id": i,
                    "email": f"edge{i}@example.com",
                    "legacy": legacy,
                    "prefs": prefs,
                    "at": JOINED,
                }
                for i, (legacy, prefs) in rows.items()
            ],
        )

    return setup


def _query(url: str, sql: str, params: dict[str, object] | None = None) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params or {})]
    finally:
        engine.dispose()


async def test_user_profile_updates_equals_the_procedure(
    tmp_path: Path, twin_urls: tuple[str, str]
) -> None:
    bot_url, procedure_url = twin_urls
    oracle.seed(twin_urls, _users(VALID))
    legacy = "SELECT COUNT(*) FROM Users WHERE LegacyPreferences IS NOT NULL"
    assert _query(procedure_url, legacy)[0][0] > 50  # the demo's users, and the edge rows
    csharp.run_procedure(procedure_url)
    _, runs = await oracle.run_bot_steps(tmp_path, bot_url, RUNBOOK, {})
    oracle.assert_same_data(oracle.snapshot(bot_url), oracle.snapshot(procedure_url))
    assert _query(bot_url, legacy) == [(1,)]  # only the '' row keeps its (empty) legacy text
    written = dict(_query(bot_url, "SELECT Id, Preferences FROM Users WHERE Id > 900000"))
    assert written[900001] == (
        '{"Theme":"dark","Language":"zh-Hant-TW \\u4E2D\\u6587",'
        '"Timezone":"Am\\u00E9rica/S\\u00E3o_Paulo",'
        '"NotificationSettings":{"EmailEnabled":true,"PushEnabled":true}}'
    )
    assert written[900007] == (
        '{"Theme":"light","Language":"","Timezone":"",'
        '"NotificationSettings":{"EmailEnabled":false,"PushEnabled":false}}'
    )
    assert written[900004] == '{"Theme":"dark"}' and written[900003] is None
    step = next(r for r in runs if r.name == "reshape-preferences")
    assert step.detail is not None and "left unchanged" not in step.detail


async def test_invalid_legacy_rows_are_left_and_reported_where_the_procedure_throws(
    tmp_path: Path, twin_urls: tuple[str, str]
) -> None:
    bot_url, procedure_url = twin_urls
    invalid = {i: (legacy, None) for i, legacy in INVALID.items()}
    oracle.seed(twin_urls, _users(VALID), _users(invalid))
    pristine = oracle.snapshot(procedure_url)
    with pytest.raises(THROWS):
        csharp.run_procedure(procedure_url)
    assert oracle.snapshot(procedure_url) == pristine, "one bad row aborts the whole save"
    csharp.run_procedure(procedure_url, only=lambda user: user.Id not in INVALID)

    m, runs = await oracle.run_bot_steps(tmp_path, bot_url, RUNBOOK, {})
    oracle.assert_same_data(oracle.snapshot(bot_url), oracle.snapshot(procedure_url))
    left = _query(
        bot_url,
        "SELECT Id, LegacyPreferences, Preferences FROM Users WHERE Id > 900100 ORDER BY Id",
    )
    assert left == [(i, legacy, None) for i, legacy in sorted(INVALID.items())]

    skipped = _query(
        bot_url,
        "SELECT row_key, reason FROM barq_skipped_rows WHERE migration_id = :m ORDER BY row_key",
        {"m": m.run_key},
    )
    assert [k for k, _ in skipped] == sorted(INVALID)
    reasons = dict(skipped)
    assert str(reasons[900101]).startswith("LegacyPreferences is not valid JSON (Expecting value")
    assert reasons[900102] == "LegacyPreferences.DarkMode is a string, want true or false"
    assert "NullReferenceException" in str(reasons[900106])
    step = next(r for r in runs if r.name == "reshape-preferences")
    assert step.detail is not None
    assert "9 rows left unchanged, for the reasons given: Id 900101: LegacyPreferences is not" in (
        step.detail
    )
    assert "Id 900105: LegacyPreferences is an array, not a JSON object" in step.detail
    assert "Id 900106" not in step.detail  # a few ids, not all of them
    assert step.detail.endswith("; and 4 more (all in barq_skipped_rows)")
    check = next(r for r in runs if r.name == "no-legacy-left")
    assert check.state == "succeeded"

    # the check tells a reported row from one the step missed (say, written behind its cursor)
    steps = yaml.safe_load((oracle.ROOT / "runbooks" / f"{RUNBOOK}.yaml").read_text())["steps"]
    check_sql = next(s for s in steps if s["name"] == "no-legacy-left")["sql"]
    assert _query(bot_url, check_sql, {"migration_id": m.run_key}) == [(0,)]
    engine = create_engine(bot_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE Users SET LegacyPreferences = '{}' WHERE Id = 900005"))
    finally:
        engine.dispose()
    assert _query(bot_url, check_sql, {"migration_id": m.run_key}) == [(1,)]
