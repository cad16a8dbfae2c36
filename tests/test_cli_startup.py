"""Starting the bot says what is wrong in one line: every missing setting at once, or the
state database it cannot reach (named without its password) and why; a good start is quiet."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot import cli
from bot.app import build
from bot.local.barq_schema import create_demo_database
from bot.settings import load_settings
from tests import harness

UNREACHABLE = "postgresql+psycopg://barq:s3cret-pw@127.0.0.1:1/barq_state"
_SETTINGS = (
    "BARQ_CONFIG",
    "BARQ_TARGETS",
    "BARQ_APPROVALS_CHANNEL",
    "BARQ_DATABASE_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
)


@pytest.fixture(autouse=True)
def bare(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("command", "needed"),
    [("serve", "SLACK_SIGNING_SECRET"), ("socket", "SLACK_APP_TOKEN")],
)
def test_every_missing_setting_is_named_at_once(
    capsys: pytest.CaptureFixture[str], command: str, needed: str
) -> None:
    """With nothing configured, one line names the token, the mode's own secret, the
    targets and the approvals channel."""
    assert cli.main([command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for name in ("SLACK_BOT_TOKEN", needed, "BARQ_TARGETS", "BARQ_APPROVALS_CHANNEL"):
        assert name in err, err


@pytest.mark.parametrize("command", [["db", "upgrade"], ["serve"]])
def test_an_unreachable_state_database_is_one_line_without_its_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """The database is named with its password hidden, and the driver says why."""
    monkeypatch.setenv("BARQ_DATABASE_URL", UNREACHABLE)
    monkeypatch.setenv("BARQ_TARGETS", '{"staging": {"url": "sqlite:///unused.db"}}')
    monkeypatch.setenv("BARQ_APPROVALS_CHANNEL", "C0APPROVALS")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-x")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
    assert cli.main(command) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    shown = "postgresql+psycopg://barq:***@127.0.0.1:1/barq_state"
    assert err.startswith(f"barq-bot: cannot reach the state database {shown}: "), err
    assert "refused" in err.lower() and "s3cret" not in err


def test_a_good_start_logs_neither_alembic_nor_bolts_token_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Alembic's INFO lines and Bolt's "`token` will be unused" are not logged at start-up;
    the bot's own line saying the schema is up to date is."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-local")  # as in production
    staging = create_demo_database(tmp_path / "staging.db", now=harness.now())
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'state.db'}",
        targets=harness.policies(staging),
        slack_api_url="http://127.0.0.1:9/api/",
    )
    with caplog.at_level(logging.INFO):
        build(settings)
    said = [(r.name, r.getMessage()) for r in caplog.records]
    assert not [s for s in said if s[0].startswith("alembic")], said
    assert not [s for s in said if "will be unused" in s[1]], said
    assert any("state schema is at head" in message for _, message in said), said
