"""Run a runbook's ``command`` step: an argument list, never a shell.

The child gets a session of its own, so a timeout or cancellation stops its whole process group
(and when it exits, what it left running there is killed). It sees only PATH, HOME and LANG of
the bot's environment plus the step's ``env``. Its merged output is streamed line by line with
the target's actual secrets (the URL's password in its plain and URL-encoded forms, and each env
value a secret was filled into) and the password of any ``scheme://user:password@`` URL
replaced by ``***``. Text that merely looks like a secret (``PWD=%s`` in a format string, a
``password=`` in a program's help) is left as it is: masking it hides what people need to read
and protects nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url

from bot.domain.plan import CommandPlan, PlannedStep
from bot.domain.planned import PlannedCommand
from bot.domain.steps import SECRET_FIELDS, TARGET_FIELDS, placeholders
from bot.errors import CommandFailed, CommandTimeout, TargetFieldError

logger = logging.getLogger(__name__)

MASK = "***"
_INHERITED = ("PATH", "HOME", "LANG")
_DEFAULT_PORTS = {"mssql": 1433, "postgresql": 5432, "mysql": 3306, "mariadb": 3306}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)\}")
_URL_PASSWORD = re.compile(r"(?<=://)([^\s:/@]*:)[^\s@/]+(?=@)")  # linear: anchored on ://
_CHUNK = _MAX_LINE = 64 * 1024  # bytes read at once; bytes kept of one line


@dataclass(frozen=True)
class CommandResult:
    """A command that exited 0: its last lines, how long it ran, how many lines it wrote."""

    exit_code: int
    tail: list[str]
    seconds: float
    lines: int


def fill_target(
    plan: CommandPlan, url: URL, target: str = "the target"
) -> tuple[list[str], dict[str, str], list[str]]:
    """Fill ``{target.*}`` from the ``url`` of the target named ``target`` → ``(argv, env,
    secrets)``. The password goes only into env values; ``secrets`` lists what to redact: the
    password's forms and every env value a secret was filled into. A missing port falls back
    to the dialect's default; other placeholders are left as they are. A value the URL lacks
    raises TargetFieldError naming the target and the field, never showing the URL."""
    port = url.port or _DEFAULT_PORTS.get(url.get_backend_name())
    values = {"target.host": url.host, "target.port": None if port is None else str(port)}
    values |= {"target.database": url.database, "target.user": url.username}
    values["target.password"] = url.password

    def fill(text: str, in_env: bool) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in TARGET_FIELDS | SECRET_FIELDS:
                return match.group(0)
            if name in SECRET_FIELDS and not in_env:
                why = f"argument {text!r} would show a secret to every process; use env"
                raise TargetFieldError(name, why)
            if (value := values[name]) is None:
                part = name.removeprefix("target.")
                why = f"the URL of target {target} has no {part}; add one to that URL"
                raise TargetFieldError(name, why)
            return value

        return _PLACEHOLDER.sub(one, text)

    argv = [fill(arg, in_env=False) for arg in plan.argv]
    env = {key: fill(value, in_env=True) for key, value in plan.env.items()}
    pw = url.password or ""
    secrets = [pw, quote(pw, safe=""), quote_plus(pw)] if pw else []
    secrets += [env[k] for k, v in plan.env.items() if placeholders(v) & SECRET_FIELDS]
    return argv, env, list(dict.fromkeys(s for s in secrets if s))


def check_target_fields(steps: Sequence[PlannedStep], url: URL | str, target: str) -> None:
    """Raise TargetFieldError, naming the step, the field and ``target``, if a command step of
    ``steps`` has a ``{target.*}`` placeholder that the target's ``url`` cannot fill; so a plan
    that would fail mid-run is refused when it is made."""
    parsed = make_url(url) if isinstance(url, str) else url
    for step in steps:
        if isinstance(step, PlannedCommand):
            try:
                fill_target(step.command, parsed, target)
            except TargetFieldError as exc:
                raise exc.in_step(step.name) from None


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a child process the bot starts: PATH, HOME and LANG of the
    bot's own, plus ``env``; nothing else (the bot's tokens stay with the bot)."""
    return {k: os.environ[k] for k in _INHERITED if k in os.environ} | dict(env)


def redactor(secrets: Sequence[str]) -> Callable[[str], str]:
    """A function that masks each of ``secrets`` (longest first) and the password of any
    ``scheme://user:password@`` URL in a text; nothing that merely looks like a secret."""
    words = sorted({s for s in secrets if s}, key=len, reverse=True)
    exact = re.compile("|".join(map(re.escape, words))) if words else None

    def redact(text: str) -> str:
        text = exact.sub(MASK, text) if exact else text
        return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK, text)

    return redact


async def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 - the step's own limit, covering the whole run
    secrets: Sequence[str] = (),
    on_line: Callable[[str], None] = lambda _l: None,
    tail_lines: int = 20,
    cwd: Path | None = None,
    grace: float = 5.0,
) -> CommandResult:
    """Run ``argv`` with ``env`` (plus PATH/HOME/LANG), passing each redacted line of merged
    output to ``on_line`` as it comes. Raises CommandFailed on a non-zero exit or a program
    that cannot start; on timeout or cancellation SIGTERMs the process group, SIGKILLs it
    after ``grace`` seconds, then raises CommandTimeout or re-raises."""
    if not argv:
        raise ValueError("a command needs at least the program to run")
    redact, longest = redactor(secrets), max(map(len, secrets), default=0)
    command = redact(shlex.join(argv))
    child_env = child_environment(env)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise _not_started(command, redact(argv[0]), cwd, exc) from None
    assert proc.stdout is not None
    tail: deque[str] = deque(maxlen=tail_lines)
    count, started = 0, time.monotonic()

    def emit(raw: bytes, dropped: int) -> None:
        nonlocal count
        text = redact(raw.decode(errors="replace").removesuffix("\r"))
        if dropped:  # a secret may straddle the cut: mask as many characters as the longest
            text = text[: max(0, len(text) - longest)] + MASK if longest else text
            text += f" … [{dropped} bytes cut]"
        count += 1
        tail.append(text)
        on_line(text)

    reaper = asyncio.create_task(_kill_leftovers(proc))
    try:
        async with asyncio.timeout(timeout):
            await _pump(proc.stdout, emit)
            code = await proc.wait()
    except TimeoutError:
        await _stop(proc, grace)
        raise CommandTimeout(command, timeout, list(tail)) from None
    except BaseException:
        await _stop(proc, grace)
        raise
    finally:
        reaper.cancel()
    seconds = time.monotonic() - started
    logger.info("command exited %d after %.1f s: %s", code, seconds, command)
    if code != 0:
        raise CommandFailed(command, code, list(tail))
    return CommandResult(exit_code=code, tail=list(tail), seconds=seconds, lines=count)


def _not_started(command: str, program: str, cwd: Path | None, exc: OSError) -> CommandFailed:
    why = f"cannot start program {program!r}: {exc.strerror or exc}"
    if isinstance(exc, FileNotFoundError) and cwd is not None and str(exc.filename) == str(cwd):
        why = f"cannot start: its working directory {str(cwd)!r} does not exist"
    elif isinstance(exc, FileNotFoundError):
        why = f"cannot start: program {program!r} was not found; install it on the bot's "
        why += "host/image (on its PATH)"
    return CommandFailed(command, None, [], why)


async def _pump(stream: asyncio.StreamReader, emit: Callable[[bytes, int], None]) -> None:
    """Split the stream into lines as chunks arrive, keeping at most _MAX_LINE bytes of each."""
    pending, dropped = bytearray(), 0

    def take(part: bytes) -> None:
        nonlocal dropped
        room = _MAX_LINE - len(pending)
        pending.extend(part[:room])
        dropped += max(0, len(part) - room)

    while chunk := await stream.read(_CHUNK):
        *complete, rest = chunk.split(b"\n")
        for part in complete:
            take(part)
            emit(bytes(pending), dropped)
            pending.clear()
            dropped = 0
        take(rest)
    if pending or dropped:
        emit(bytes(pending), dropped)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group ``pid`` leads, if it is still there."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _kill_leftovers(proc: asyncio.subprocess.Process) -> None:
    # Polled: proc.wait() also waits for the pipe, which the leftovers would hold open.
    while proc.returncode is None:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    signal_group(proc.pid, signal.SIGKILL)


async def _stop(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the process group; SIGKILL it after ``grace`` seconds, or if interrupted."""
    logger.warning("stopping command (pid %d)", proc.pid)
    signal_group(proc.pid, signal.SIGTERM)
    try:
        for wait in (grace, max(grace, 1.0)):  # for the TERM, then for the KILL
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await _ended(proc)
            signal_group(proc.pid, signal.SIGKILL)
    finally:
        signal_group(proc.pid, signal.SIGKILL)


async def _ended(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    while await proc.stdout.read(_CHUNK):
        pass
    await proc.wait()
