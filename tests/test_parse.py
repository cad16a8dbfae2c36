"""Parsing /migrate text: every mistake says what was wrong and what to type instead."""

from __future__ import annotations

import pytest

from bot.errors import UsageError
from handlers.parse import Command, parse


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("", Command("help")),
        ("HELP", Command("help")),
        ("list", Command("list")),
        ("status", Command("status")),
        ("status #12", Command("status", migration_id=12)),
        ("cancel 3", Command("cancel", migration_id=3)),
        (
            "plan tenant-consolidation source_tenant=3 target_tenant=7 on=staging",
            Command(
                "plan",
                runbook="tenant-consolidation",
                params={"source_tenant": "3", "target_tenant": "7"},
                target="staging",
            ),
        ),
        (
            "request r note=“two words” on=production",
            Command("request", runbook="r", params={"note": "two words"}, target="production"),
        ),
    ],
)
def test_commands_parse(text: str, command: Command) -> None:
    """Subcommands, ids, parameters and smart quotes as Slack sends them."""
    assert parse(text) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frobnicate", "unknown subcommand 'frobnicate'"),
        ("stauts 3", "Did you mean `status`?"),
        ("plan tenant-consolidation source_tenant=3 target_tenant=7", "on=<target>"),
        ("plan source_tenant=3 on=staging", "name a runbook first"),
        ("plan r tenant on=staging", "'tenant' is not a parameter: write name=value"),
        ("plan r a=1 a=2 on=staging", "a is given twice"),
        ("plan r note='open on=staging", "check your quotes"),
        ("status abc", "is not a migration id"),
        ("status 1 2", "is not a migration id"),
        ("cancel", "say which migration to cancel"),
    ],
)
def test_mistakes_get_a_message_saying_what_to_type(text: str, message: str) -> None:
    """Each malformed command raises a UsageError whose message explains the fix."""
    with pytest.raises(UsageError) as info:
        parse(text)
    assert message in str(info.value)
