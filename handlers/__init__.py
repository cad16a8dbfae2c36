"""Slack listeners: thin adapters from Slack payloads to the service's use cases."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.service import Service
from handlers import actions, commands


def register(app: AsyncApp, service: Service) -> None:
    """Register every listener of the bot on ``app``."""
    commands.register(app, service)
    actions.register(app, service)
