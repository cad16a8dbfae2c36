"""End to end: `barq-bot serve` as a real process on loopback, a fake Slack Web API, signed
requests as Slack sends them, and the migration's effect checked in a real PostgreSQL (and a
real SQL Server when BARQ_TEST_MSSQL_URL names one)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import create_engine, text

from bot.local import payloads
from bot.local.barq_schema import create_schema, seed_demo
from bot.local.process import BotProcess
from bot.local.slack import LocalSlack
from tests.harness import APPROVALS, CHANNELS, CONSOLE, MIGRATIONS, USERS, now

ROOT = Path(__file__).resolve().parent.parent
SECRET = "e2e-signing-secret"


@pytest.fixture
async def slack() -> AsyncIterator[LocalSlack]:
    async with LocalSlack(channels=CHANNELS, usergroups={"S0DBA": ["U0BOB"]}, users=USERS) as s:
        yield s


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mssql", marks=pytest.mark.mssql),
    ]
)
def target_db(request: pytest.FixtureRequest) -> str:
    """A fresh, empty target database on a server."""
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "mssql_url"))


@pytest.fixture
async def served(tmp_path: Path, target_db: str, slack: LocalSlack) -> AsyncIterator[str]:
    engine = create_engine(target_db)
    create_schema(engine)
    seed_demo(engine, now=now())
    engine.dispose()
    config = {
        "targets": {
            "staging": {
                "url": target_db.replace("postgres@", "${E2E_PG_USER}@"),  # from the env
                "approval": {"approver_groups": ["S0DBA"], "required": 1},
            }
        },
        "approvals_channel": APPROVALS,
        "notify_channel": MIGRATIONS,
        "runbooks_dir": str(ROOT / "runbooks"),
    }
    env = {"E2E_PG_USER": "postgres"}
    async with BotProcess(tmp_path, config, slack.api_url, signing_secret=SECRET, env=env) as bot:
        yield bot.url


async def _post(url: str, body: str, secret: str = SECRET) -> tuple[int, float]:
    headers = payloads.sign(body, secret, payloads.now_ts())
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/slack/events", data=body, headers=headers) as resp,
    ):
        await resp.read()
        return resp.status, time.monotonic() - started


async def test_request_approve_run_on_a_server(
    served: str, slack: LocalSlack, target_db: str
) -> None:
    """/migrate request, an approval click, and the tenant's data moved in the database."""
    target = create_engine(target_db)
    with target.connect() as conn:
        moving = conn.execute(text("SELECT COUNT(*) FROM Tasks WHERE TenantId = 3")).scalar()
        total = conn.execute(text("SELECT COUNT(*) FROM Tasks WHERE TenantId IN (3, 7)")).scalar()
    assert moving and moving > 0

    forged, _ = await _post(served, "command=%2Fmigrate&text=help", secret="wrong")
    assert forged == 401

    acks = await request_and_approve(
        served, slack, "request tenant-consolidation source_tenant=3 target_tenant=7 on=staging"
    )
    assert max(acks) < 3.0, "Slack needs its ack within 3 seconds"

    def finished(s: LocalSlack) -> bool:
        return any(m.get("thread_ts") for m in s.messages_in(MIGRATIONS))

    await slack.wait_for(finished, timeout=30)
    outcome = next(m for m in slack.messages_in(MIGRATIONS) if m.get("thread_ts"))
    assert "succeeded" in outcome["text"]
    with target.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM Tasks WHERE TenantId = 3")).scalar() == 0
        assert conn.execute(text("SELECT COUNT(*) FROM Tasks WHERE TenantId = 7")).scalar() == total
        journal = conn.execute(text("SELECT COUNT(*) FROM barq_journal")).scalar()
        assert journal and journal >= moving
    assert [r["key"] for r in slack.responses][:1] == ["req"]
    target.dispose()


async def request_and_approve(url: str, slack: LocalSlack, text: str) -> tuple[float, float]:
    """Type ``/migrate <text>`` as alice, then click Approve on the posted request as bob
    (an S0DBA member); return how long each of the two acks took."""
    status, typed = await _post(url, alice_types(slack, text, "req"))
    assert status == 200
    await slack.wait_for(lambda s: s.messages_in(APPROVALS), timeout=15)
    status, clicked = await _post(url, approve_click(slack))
    assert status == 200
    return typed, clicked


def alice_types(slack: LocalSlack, text: str, response_key: str) -> str:
    """The form body Slack posts when alice types ``/migrate <text>``."""
    return payloads.slash_command(
        "/migrate",
        text,
        user_id="U0ALICE",
        user_name="alice",
        channel_id=CONSOLE,
        response_url=slack.response_url(response_key),
        trigger_id=payloads.new_trigger_id(),
    )


def approve_click(slack: LocalSlack) -> str:
    """The block_actions body of bob clicking Approve on the first approval request."""
    request = slack.messages_in(APPROVALS)[0]
    approve = next(b for b in slack.find_buttons(request) if b["action_id"] == "approve")
    return payloads.block_actions(
        user_id="U0BOB",
        user_name="bob",
        channel_id=APPROVALS,
        message=request,
        action=approve,
        response_url=slack.response_url("click"),
        trigger_id=payloads.new_trigger_id(),
    )
