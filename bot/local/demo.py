"""The embedded demo: SQLite targets ``staging`` and ``production`` with BARQ data, a local
state database, and demo Slack users, groups and channels."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

from bot.local.barq_schema import create_demo_database
from bot.settings import Settings, load_settings

USERS = {"U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol", "U0DAVE": "dave"}
GROUPS = {"S0DBA": ["U0BOB", "U0CAROL"]}
GROUP_NAMES = {"S0DBA": "dba-team"}
APPROVALS, MIGRATIONS, CONSOLE = "C0APPROVALS", "C0MIGRATIONS", "C0CONSOLE"
CHANNELS = {APPROVALS: "migration-approvals", MIGRATIONS: "migrations", CONSOLE: "console"}
DEMO_WINDOWS = {
    "timezone": "Europe/Amsterdam",
    "recurring": [
        {"cron": "0 1 * * *", "duration": "3h"},  # every night 01:00-04:00
        {"cron": "0 22 * * sat", "duration": "6h"},  # Saturday 22:00 to Sunday 04:00
    ],
    "blackouts": [{"from": "2026-12-24", "to": "2026-12-26", "reason": "Christmas freeze"}],
    "on_window_end": "pause",
    "max_concurrent": 1,
    "emergency": {"approvers": ["U0DAVE"], "approver_groups": ["S0DBA"], "required": 2},
}


def demo_settings(workdir: Path, api_url: str, now: datetime, *, fresh: bool = True) -> Settings:
    """Create the demo databases under ``workdir`` and the settings that use them.

    Staging needs one approval from the dba-team group; production needs two, from dba-team
    or dave, and runs in its downtime windows (every night 01:00-04:00 Amsterdam time)."""
    workdir.mkdir(parents=True, exist_ok=True)
    targets = {}
    for name in ("staging", "production"):
        path = workdir / f"{name}.db"
        if fresh or not path.exists():
            create_demo_database(path, now=now)
        targets[name] = {
            "url": f"sqlite:///{path.resolve()}",
            "description": f"demo {name} (SQLite)",
            "production": name == "production",
            "approval": {
                "approver_groups": ["S0DBA"],
                "approvers": ["U0DAVE"] if name == "production" else [],
                "required": 2 if name == "production" else 1,
            },
        }
        if name == "production":  # runs wait for a downtime window (staging: at once)
            targets[name]["windows"] = DEMO_WINDOWS
    state = workdir / "state.db"
    if fresh:
        state.unlink(missing_ok=True)
    return load_settings(
        database_url=f"sqlite:///{state.resolve()}",
        targets=targets,
        approvals_channel=APPROVALS,
        notify_channel=MIGRATIONS,
        backup_dir=workdir / "backups",
        slack_bot_token="xoxb-local",
        slack_signing_secret=secrets.token_hex(16),
        slack_api_url=api_url,
        # the console shows every update as it comes: there is no Slack rate limit to spare
        slack_update_seconds=0,
    )
