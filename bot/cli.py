"""``barq-bot``: serve (HTTP), socket (Socket Mode), shell (local console), runbooks, db."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from bot.errors import BarqError, ConfigError

if TYPE_CHECKING:
    from bot.settings import Settings

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except BarqError as exc:
        print(f"barq-bot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="barq-bot",
        description="The BARQ migration bot: plan, approve and run data migrations from Slack.",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(required=True, metavar="command")
    serve = sub.add_parser("serve", help="serve Slack's HTTP requests on $PORT (default 3000)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.set_defaults(func=_serve)
    sub.add_parser(
        "socket", help="connect to Slack in Socket Mode ($SLACK_APP_TOKEN)"
    ).set_defaults(func=_socket)
    shell = sub.add_parser("shell", help="the local console, with no Slack")
    shell.add_argument("--demo", action="store_true", help="create demo SQLite targets (required)")
    shell.add_argument("--as", dest="user", default="alice", help="start as this demo user")
    shell.add_argument(
        "--workdir", type=Path, default=Path("var/demo"), help="where the demo data lives"
    )
    shell.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo data of the last run (its migrations and pending requests)",
    )
    shell.set_defaults(func=_shell)
    runbooks = sub.add_parser("runbooks", help="runbook tools").add_subparsers(required=True)
    runbooks.add_parser("validate", help="check every runbook").set_defaults(func=_validate)
    db = sub.add_parser("db", help="the bot's state database").add_subparsers(required=True)
    db.add_parser("upgrade", help="apply the schema migrations").set_defaults(func=_upgrade)
    return parser


def _check(settings: Settings, needed: str) -> None:
    """Raise ConfigError naming every setting that ``serve`` or ``socket`` (``needed``) lacks,
    all at once."""
    wanted: list[tuple[str, object]] = [
        ("SLACK_BOT_TOKEN (the bot's xoxb- token)", settings.slack_bot_token),
        ("targets (BARQ_TARGETS, or targets: in $BARQ_CONFIG)", settings.targets),
        (
            "the approvals channel (BARQ_APPROVALS_CHANNEL, or approvals_channel: in $BARQ_CONFIG)",
            settings.approvals_channel,
        ),
    ]
    if needed == "serve":
        wanted.insert(
            1, ("SLACK_SIGNING_SECRET (to verify Slack's requests)", settings.slack_signing_secret)
        )
    else:
        wanted.insert(
            1, ("SLACK_APP_TOKEN (the xapp- token for Socket Mode)", settings.slack_app_token)
        )
    missing = [name for name, value in wanted if not value]
    if missing:
        raise ConfigError(
            f"{needed} needs settings that are not set: {'; '.join(missing)}. Set them in the"
            " environment or in the YAML file named by $BARQ_CONFIG"
        )


def _serve(args: argparse.Namespace) -> int:
    from bot.app import build, web_app
    from bot.settings import load_settings

    settings = load_settings()
    _check(settings, "serve")
    web.run_app(web_app(build(settings)), host=args.host, port=settings.port, print=None)
    return 0


def _socket(_args: argparse.Namespace) -> int:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    from bot.app import build
    from bot.settings import load_settings

    settings = load_settings()
    _check(settings, "socket")
    assert settings.slack_app_token is not None
    app_token = settings.slack_app_token.get_secret_value()

    async def run() -> None:
        bot = build(settings)
        await bot.start_background()
        try:
            await AsyncSocketModeHandler(bot.bolt, app_token).start_async()  # type: ignore[no-untyped-call]
        finally:
            await bot.stop_background()

    asyncio.run(run())
    return 0


def _shell(args: argparse.Namespace) -> int:
    if not args.demo:
        print(
            "barq-bot: the console runs on demo targets only for now: barq-bot shell --demo",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_shell_async(args))


async def _shell_async(args: argparse.Namespace) -> int:
    logging.disable(logging.INFO)  # the console shows warnings only; it has its own output
    from bot.local.console import run_demo  # the stand-in world stays out of the product

    await run_demo(args.workdir, args.user, fresh=not args.keep)
    return 0


def _validate(_args: argparse.Namespace) -> int:
    from bot.adapters.runbook_files import load_runbooks
    from bot.settings import load_settings

    settings = load_settings()
    found = load_runbooks(settings.runbooks_dir)
    for name, runbook in sorted(found.items()):
        steps, rollback = len(runbook.steps), len(runbook.rollback)
        print(
            f"ok  {name}: {steps} step{'s' * (steps != 1)}, "
            f"{rollback} rollback step{'s' * (rollback != 1)}"
        )
    print(f"{len(found)} runbooks valid in {settings.runbooks_dir}")
    return 0


def _upgrade(_args: argparse.Namespace) -> int:
    from bot.adapters.schema_migrations import upgrade
    from bot.adapters.store import state_engine
    from bot.settings import load_settings

    settings = load_settings()
    upgrade(state_engine(settings.database_url))
    print("state database is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
