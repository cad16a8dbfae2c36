"""Slash-command ack latency while a migration runs: ``barq-bot serve`` runs as its own process
on loopback (configured by a YAML file and environment variables, talking to a LocalSlack Web
API stand-in), and 5 concurrent clients send correctly signed ``/migrate help`` requests to its
``POST /slack/events``, each waiting ``--think-ms`` between requests. The same load is measured
twice in one run: (i) with no migration running, and (ii) while the bot runs a batch migration
moving tenant 1 -> 2 over a ``--rows``-row PostgreSQL Tasks table (started by a signed
``/migrate request`` and an approval click from an S0DBA member; the loaded phase stops when the
migration finishes, and only requests answered while its checkpoint showed it running count).
Prints JSON: requests sent, errors, p50/p99/max ack latency in ms for each phase, and the p99
ratio loaded/idle (target at most 3x).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError

from bench._common import (
    SOURCE_TENANT,
    TARGET_TENANT,
    MeasurementError,
    bot_config,
    fresh_tasks,
    logger,
    machine,
    percentile,
    print_figures,
    rnd,
    scratch_database,
    setup_logging,
    tenant_counts,
)
from bot.local import demo, payloads
from bot.local.process import BotProcess
from bot.local.slack import LocalSlack

SECRET = "bench-signing-secret"
RUNBOOK = "bench-move-tenant"
STEP = "move-tasks"
CLIENTS = 5
REQUESTER, APPROVER = "U0ALICE", "U0BOB"
TARGET_P99_RATIO = 3.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.ack_latency")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in Tasks (all move)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per phase, at most")
    parser.add_argument("--think-ms", type=float, default=50.0, help="pause after each reply")
    parser.add_argument("--warmup", type=int, default=25, help="unmeasured requests first")
    parser.add_argument("--phase-cap-seconds", type=float, default=300.0)
    parser.add_argument("--min-loaded", type=int, default=200, help="fewest loaded samples")
    parser.add_argument("--migration-timeout", type=float, default=900.0)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- files and process


def runbook_yaml() -> dict[str, Any]:
    """A one-step batch runbook moving a tenant's Tasks (no ``exists`` checks: the bench
    data has Tasks only)."""
    tenant = {"type": "int", "min": 1}
    return {
        "name": RUNBOOK,
        "description": "Move a tenant's tasks in keyset batches (benchmark).",
        "targets": ["staging"],
        "parameters": {"source_tenant": tenant, "target_tenant": tenant},
        "distinct": [["source_tenant", "target_tenant"]],
        "steps": [
            {
                "name": STEP,
                "kind": "batch",
                "description": "move the tasks in short transactions",
                "table": "Tasks",
                "key": "Id",
                "where": "TenantId = :source_tenant",
                "update": "TenantId = :target_tenant",
                "count": "SELECT COUNT(*) FROM Tasks WHERE TenantId = :source_tenant",
            }
        ],
    }


# --------------------------------------------------------------------------- load


@dataclass
class Sample:
    """One request: when it was answered (monotonic), how long it took, and whether it was ok."""

    ended: float
    ms: float
    ok: bool


@dataclass
class Load:
    """Paced closed-loop load from CLIENTS clients, up to ``limit`` requests in all."""

    url: str
    response_url: str
    limit: int
    think: float
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    samples: list[Sample] = field(default_factory=list)
    sent: int = 0

    async def run(self, cap_seconds: float) -> None:
        """Drive the clients until ``limit`` requests, ``stop`` is set, or the time cap."""
        connector = aiohttp.TCPConnector(limit=CLIENTS)
        async with aiohttp.ClientSession(connector=connector) as session:
            clients = [self._client(session) for _ in range(CLIENTS)]
            with suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*clients), cap_seconds)

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while not self.stop.is_set() and self.sent < self.limit:
            self.sent += 1
            self.samples.append(await self._one(session))
            await asyncio.sleep(self.think)

    async def _one(self, session: aiohttp.ClientSession) -> Sample:
        body = payloads.slash_command(
            "/migrate",
            "help",
            user_id=REQUESTER,
            user_name=demo.USERS[REQUESTER],
            channel_id=demo.CONSOLE,
            response_url=self.response_url,
            trigger_id=payloads.new_trigger_id(),
        )
        headers = payloads.sign(body, SECRET, payloads.now_ts())
        started = time.perf_counter()
        try:
            async with session.post(f"{self.url}/slack/events", data=body, headers=headers) as resp:
                content = await resp.read()
                ok = resp.status == 200 and b'"blocks"' in content
        except aiohttp.ClientError:
            ok = False
        ended = time.perf_counter()
        return Sample(ended, (ended - started) * 1000, ok)


def latency_figures(samples: list[Sample], sent: int) -> dict[str, Any]:
    """Counts and latency percentiles of the successful requests."""
    good = [s.ms for s in samples if s.ok]
    if not good:
        raise MeasurementError("no request of the phase succeeded")
    return {
        "requests_sent": sent,
        "requests_measured": len(samples),
        "errors": sum(1 for s in samples if not s.ok),
        "p50_ms": rnd(percentile(good, 0.50), 2),
        "p99_ms": rnd(percentile(good, 0.99), 2),
        "max_ms": rnd(max(good), 2),
        "mean_ms": rnd(sum(good) / len(good), 2),
    }


# --------------------------------------------------------------------------- the migration


@dataclass
class Progress:
    """The migration's checkpoint in the target, sampled while the load runs."""

    target_url: str
    times: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    finished_at: float | None = None
    _engine: Engine | None = None

    def read(self) -> tuple[int, bool] | None:
        """rows_done and done of the step's checkpoint, or None before it exists."""
        if self._engine is None:
            self._engine = create_engine(self.target_url, pool_size=1, max_overflow=0)
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    text("SELECT rows_done, done FROM barq_checkpoints WHERE step = :s"),
                    {"s": STEP},
                ).first()
        except ProgrammingError:  # the table does not exist before the run starts
            return None
        return None if row is None else (int(row[0]), bool(row[1]))

    def close(self) -> None:
        """Close the sampling connection."""
        if self._engine is not None:
            self._engine.dispose()

    async def watch(self, load: Load, every: float = 0.25) -> None:
        """Sample until the migration finishes (then stop the load) or the load is over."""
        while not load.stop.is_set():
            seen = await asyncio.to_thread(self.read)
            now = time.perf_counter()
            if seen is not None:
                self.times.append(now)
                self.rows.append(seen[0])
                if seen[1]:
                    self.finished_at = now
                    load.stop.set()
                    return
            await asyncio.sleep(every)

    async def wait_rows(self, at_least: int, seconds: float) -> None:
        """Wait until the checkpoint shows ``at_least`` rows done."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    seen = await asyncio.to_thread(self.read)
                    if seen is not None and (seen[0] >= at_least or seen[1]):
                        return
                    await asyncio.sleep(0.1)
        except TimeoutError as exc:
            raise MeasurementError("the migration's batch step never started") from exc


async def post(session: aiohttp.ClientSession, url: str, body: str) -> None:
    """POST a signed body to /slack/events; it must be acknowledged."""
    headers = payloads.sign(body, SECRET, payloads.now_ts())
    async with session.post(f"{url}/slack/events", data=body, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise MeasurementError(f"the bot answered {resp.status} to a signed request")


async def start_migration(session: aiohttp.ClientSession, url: str, slack: LocalSlack) -> None:
    """``/migrate request`` as the requester, then Approve as a member of S0DBA."""
    command = f"request {RUNBOOK} source_tenant={SOURCE_TENANT} target_tenant={TARGET_TENANT}"
    body = payloads.slash_command(
        "/migrate",
        f"{command} on=staging",
        user_id=REQUESTER,
        user_name=demo.USERS[REQUESTER],
        channel_id=demo.CONSOLE,
        response_url=slack.response_url("request"),
        trigger_id=payloads.new_trigger_id(),
    )
    await post(session, url, body)
    await slack.wait_for(lambda s: s.messages_in(demo.APPROVALS), timeout=120)
    request = slack.messages_in(demo.APPROVALS)[0]
    approve = next(b for b in slack.find_buttons(request) if b["action_id"] == "approve")
    click = payloads.block_actions(
        user_id=APPROVER,
        user_name=demo.USERS[APPROVER],
        channel_id=demo.APPROVALS,
        message=request,
        action=approve,
        response_url=slack.response_url("approve"),
        trigger_id=payloads.new_trigger_id(),
    )
    await post(session, url, click)
    logger.info("migration requested and approved")


def final_state(state_db: Path) -> dict[str, Any]:
    """The migration's record in the bot's state store (read-only)."""
    uri = f"file:{state_db}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
        row = conn.execute(
            "SELECT id, state, started_at, finished_at, error FROM barq_migrations"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
    if row is None:
        raise MeasurementError("the bot recorded no migration")
    keys = ("id", "state", "started_at", "finished_at", "error")
    return dict(zip(keys, row, strict=True))


async def wait_finished(state_db: Path, seconds: float) -> dict[str, Any]:
    """Poll the state store until the migration has left ``running`` (bounded)."""
    deadline = time.monotonic() + seconds
    state = await asyncio.to_thread(final_state, state_db)
    while state["state"] in {"requested", "approved", "running"}:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
        state = await asyncio.to_thread(final_state, state_db)
    return state


# --------------------------------------------------------------------------- phases


async def idle_phase(url: str, slack: LocalSlack, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then the load with no migration running."""
    warm = Load(url, slack.response_url("warmup"), args.warmup, args.think_ms / 1000)
    await warm.run(args.phase_cap_seconds)
    idle = Load(url, slack.response_url("idle"), args.requests, args.think_ms / 1000)
    await idle.run(args.phase_cap_seconds)
    return latency_figures(idle.samples, idle.sent)


async def loaded_phase(
    url: str, slack: LocalSlack, args: argparse.Namespace, progress: Progress
) -> dict[str, Any]:
    """The same load while the migration runs; only replies before it finished count."""
    load = Load(url, slack.response_url("loaded"), args.requests, args.think_ms / 1000)
    watcher = asyncio.create_task(progress.watch(load))
    began = time.perf_counter()
    await load.run(args.phase_cap_seconds)
    ended = time.perf_counter()
    load.stop.set()
    await watcher
    cutoff = progress.finished_at or ended
    during = [s for s in load.samples if s.ended <= cutoff]
    if len(during) < args.min_loaded:
        raise MeasurementError(
            f"only {len(during)} replies came while the migration ran (need {args.min_loaded});"
            " use more --rows"
        )
    figures = latency_figures(during, load.sent)
    figures["replies_after_migration_finished_excluded"] = len(load.samples) - len(during)
    figures["phase_seconds"] = rnd(min(cutoff, ended) - began, 2)
    figures["migration_rows_done_during_phase"] = (
        progress.rows[-1] - progress.rows[0] if progress.rows else 0
    )
    figures["checkpoint_samples"] = len(progress.rows)
    return figures


async def measure(target_url: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start the Slack stand-in and the bot, then measure both phases."""
    config = bot_config(workdir, target_url, RUNBOOK, runbook_yaml())
    async with (
        LocalSlack(
            channels=demo.CHANNELS, usergroups={"S0DBA": [APPROVER]}, users=demo.USERS
        ) as slack,
        BotProcess(workdir, config, slack.api_url, signing_secret=SECRET) as bot,
        aiohttp.ClientSession() as session,
    ):
        url = bot.url
        idle = await idle_phase(url, slack, args)
        logger.info("idle: %s", idle)
        progress = Progress(target_url)
        try:
            requested = time.perf_counter()
            await start_migration(session, url, slack)
            await progress.wait_rows(1, seconds=120)
            loaded = await loaded_phase(url, slack, args, progress)
            logger.info("loaded: %s", loaded)
            record = await wait_finished(bot.state_db, args.migration_timeout)
            seconds = time.perf_counter() - requested
        finally:
            progress.close()
    return {"idle": idle, "loaded": loaded, "record": record, "seconds": seconds}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything, in one scratch database and one temporary directory."""
    load = os.getloadavg()
    with (
        scratch_database("barq_bench_ack") as target_url,
        tempfile.TemporaryDirectory(prefix="barq-bench-ack-") as tmp,
    ):
        fresh_tasks(target_url, args.rows, 1)
        result = asyncio.run(measure(target_url, Path(tmp), args))
        counts = tenant_counts(target_url)
    idle, loaded, record = result["idle"], result["loaded"], result["record"]
    ratio = loaded["p99_ms"] / idle["p99_ms"]
    return {
        "benchmark": "ack_latency",
        "machine": machine(load),
        "clients": CLIENTS,
        "think_ms": args.think_ms,
        "command": "/migrate help",
        "bot": "barq-bot serve (separate process, loopback)",
        "idle": idle,
        "loaded": loaded,
        "migration": {
            "rows": args.rows,
            "moved_tenant": f"{SOURCE_TENANT} -> {TARGET_TENANT}",
            "state": record["state"],
            "error": record["error"],
            "started_at": record["started_at"],
            "finished_at": record["finished_at"],
            "seconds_from_request_to_done": rnd(result["seconds"], 2),
            "rows_in_target_tenant_after": counts.get(TARGET_TENANT, 0),
        },
        "summary": {
            "p99_ratio_loaded_over_idle": rnd(ratio, 2),
            "p99_ratio_target_max": TARGET_P99_RATIO,
            "p99_ratio_met": ratio <= TARGET_P99_RATIO,
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 if a measurement could not be taken."""
    setup_logging()
    args = parse_args(argv)
    return print_figures("ack_latency", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
