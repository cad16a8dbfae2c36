"""``barq-bot serve`` (or ``socket``) as a child process, for the end-to-end tests and the
benchmarks: started with a YAML config and its environment, waited for until it is ready,
stopped with SIGTERM (or SIGKILLed, for crash tests), and always cleaned up.

    async with BotProcess(tmp_path, config, slack.api_url, signing_secret=SECRET) as bot:
        ...  # POST to f"{bot.url}/slack/events"
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp
import yaml

import bot

logger = logging.getLogger(__name__)

Ready = Callable[[], bool | Awaitable[bool]]
_SOURCE_ROOT = Path(bot.__file__).resolve().parent.parent  # the child runs this very code


class LaunchError(RuntimeError):
    """Raised when the bot process exits or is not ready in time, or does not stop on
    SIGTERM within its timeout (it is then SIGKILLed). The message ends with its log."""

    def __init__(self, what: str, log: str) -> None:
        super().__init__(f"barq-bot {what}; its log ends:\n{log}")


def free_port() -> int:
    """A TCP port that is free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BotProcess:
    """``barq-bot <command>`` in ``workdir``: ``config`` is written to ``barq.yaml`` there
    (``$BARQ_CONFIG``), the state database is ``state.db`` there, the Web API is
    ``slack_api_url`` with the bot token ``xoxb-local``, and ``serve`` listens on
    ``127.0.0.1:port`` (a free port, kept across restarts). ``env`` adds or overrides
    variables. Every start appends to the log file ``<command>.log`` in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        config: Mapping[str, Any],
        slack_api_url: str,
        *,
        command: Literal["serve", "socket"] = "serve",
        signing_secret: str | None = None,
        app_token: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir, self.command = workdir, command
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_db = workdir / "state.db"
        self.log_path = workdir / f"{command}.log"
        self.process: asyncio.subprocess.Process | None = None
        config_path = workdir / "barq.yaml"
        config_path.write_text(yaml.safe_dump(dict(config)))
        pythonpath = [str(_SOURCE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "BARQ_CONFIG": str(config_path),
            "BARQ_DATABASE_URL": f"sqlite:///{self.state_db}",
            "SLACK_BOT_TOKEN": "xoxb-local",
            "SLACK_API_URL": slack_api_url,
            "PORT": str(self.port),
            **({"SLACK_SIGNING_SECRET": signing_secret} if signing_secret else {}),
            **({"SLACK_APP_TOKEN": app_token} if app_token else {}),
            **(env or {}),
        }

    @property
    def running(self) -> bool:
        """Started and not exited yet."""
        return self.process is not None and self.process.returncode is None

    def log(self, last: int = 4000) -> str:
        """The last ``last`` characters of the log."""
        return self.log_path.read_text()[-last:] if self.log_path.exists() else ""

    async def start(self, ready: Ready | None = None, seconds: float = 60) -> None:
        """Start the process and wait until ``ready()`` is true; for ``serve`` by default
        until ``GET /healthz`` answers ok. ``socket`` has no HTTP: pass ``ready``."""
        if self.running:
            raise RuntimeError(f"barq-bot {self.command} is already running")
        argv = [sys.executable, "-m", "bot.cli", self.command]
        if self.command == "serve":
            argv += ["--host", "127.0.0.1"]
        elif ready is None:
            raise ValueError(f"barq-bot {self.command} has no /healthz: say when it is ready")
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *argv, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        logger.info("barq-bot %s started (pid %d)", self.command, self.process.pid)
        try:
            await self.wait_until(ready or self._healthy, seconds, what="ready")
        except BaseException:
            await self._reap(signal.SIGKILL)
            raise

    async def wait_until(
        self, ready: Ready, seconds: float, *, what: str = "ready", every: float = 0.05
    ) -> None:
        """Poll ``ready()`` (sync or async) until it is true; raise LaunchError if the
        process exits first or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        while True:
            if not self.running:
                raise LaunchError(f"{self.command} exited ({self._returncode()})", self.log())
            result = ready()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            if time.monotonic() > deadline:
                raise LaunchError(f"{self.command} not {what} within {seconds:g} s", self.log())
            await asyncio.sleep(every)

    async def stop(self, grace: float = 15) -> int | None:
        """SIGTERM, then wait up to ``grace`` seconds without blocking the event loop (on its
        way out the bot still delivers to a stand-in this loop may serve; its own last outbox
        pass is bounded to 10 s). Return the exit code; raise LaunchError if it had to be
        SIGKILLed. Does nothing if it is not running."""
        if not self.running:
            return self._returncode()
        if await self._reap(signal.SIGTERM, grace):
            return self._returncode()
        await self._reap(signal.SIGKILL)
        raise LaunchError(f"{self.command} ignored SIGTERM for {grace:g} s: killed", self.log())

    async def kill(self) -> int | None:
        """SIGKILL the process, as a crash would; return its exit code (``-SIGKILL``)."""
        await self._reap(signal.SIGKILL)
        return self._returncode()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _reap(self, sig: signal.Signals, seconds: float = 10) -> bool:
        """Send ``sig`` and wait for the exit; True if it exited within ``seconds``."""
        process = self.process
        if process is None or process.returncode is not None:
            return True
        process.send_signal(sig)
        try:
            await asyncio.wait_for(process.wait(), seconds)
        except TimeoutError:
            return False
        logger.info("barq-bot %s stopped (exit %s)", self.command, process.returncode)
        return True

    def _returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def _healthy(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(f"{self.url}/healthz") as resp,
            ):
                return resp.status == 200 and bool((await resp.json()).get("ok"))
        except (aiohttp.ClientError, TimeoutError):
            return False
