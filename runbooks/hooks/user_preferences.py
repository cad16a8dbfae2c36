"""Row hook for user-profile-updates: the runbook's C# MigrateUserPreferences, row by row.

The old format is {"DarkMode": bool, "Locale": str, "TimeZone": str, "EmailNotifications":
bool, "PushNotifications": bool}; the new one is {"theme", "language", "timezone",
"notifications": {"email", "push"}}. Missing values take the same defaults as the C# code.
"""

from __future__ import annotations

import json
from typing import Any


def migrate(row: dict[str, Any]) -> dict[str, Any] | None:
    """New Preferences from LegacyPreferences; None leaves a row without legacy data alone."""
    legacy = row.get("LegacyPreferences")
    if not legacy:
        return None
    old = json.loads(legacy)
    new = {
        "theme": "dark" if old.get("DarkMode") else "light",
        "language": old.get("Locale") or "en",
        "timezone": old.get("TimeZone") or "UTC",
        "notifications": {
            "email": bool(old.get("EmailNotifications", False)),
            "push": bool(old.get("PushNotifications", False)),
        },
    }
    return {"Preferences": json.dumps(new, sort_keys=True), "LegacyPreferences": None}
