"""Run a runbook's ``command`` step: an argument list, never a shell.

The child gets a session of its own, so a timeout or cancellation stops its whole process group
(and when it exits, what it left running there is killed). It sees only PATH, HOME and LANG of
the bot's environment plus the step's ``env``. ``{target.*}`` is filled from the target's
fields, which each dialect reads from its URL (``Dialect.command_fields``): host, port,
database, user, and, only in ``env``, the password and an ADO.NET connection string in the
dialect's form. Its merged output is streamed line by line with the target's actual secrets
(the password in its plain, URL-encoded and connection-string-quoted forms, and each env value
a secret was filled into) and the password of any ``scheme://user:password@`` URL replaced by
``***``. Text that merely looks like a secret (``PWD=%s`` in a format string, a ``password=``
in a program's help) is left as it is: masking it hides what people need to read and protects
nothing.
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

from sqlalchemy.engine import URL

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


@dataclass(frozen=True)
class TargetFields:
    """What ``{target.*}`` is filled with on one target: each field, None where the target
    has none. ``connection`` is ``{target.connection_string}`` as ADO.NET keywords and values
    in order (None marks the password's place), None where the dialect has no such form;
    ``lacking`` says why fields are missing when it is more than a gap in the URL (e.g.
    "SQLite, which has no server")."""

    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password: str | None = None
    connection: tuple[tuple[str, str | None], ...] | None = None
    lacking: str = ""


def url_fields(url: URL) -> TargetFields:
    """The fields the parts of ``url`` give (a missing port is the dialect's default; a
    host may also come from the query, as libpq's ``?host=/run/postgresql``); no
    connection string."""
    host = url.host
    if host is None and isinstance(found := url.query.get("host"), str):
        host = found
    return TargetFields(
        host=host,
        port=url.port or _DEFAULT_PORTS.get(url.get_backend_name()),
        database=url.database,
        user=url.username,
        password=url.password,
    )


def ado_value(value: str) -> str:
    """``value`` as an ADO.NET connection string writes it: as it is, or in double quotes
    (inner ones doubled) when it has a ``;``, a quote or spaces at either end."""
    if value and value == value.strip() and not re.search("[;'\"]", value):
        return value
    return '"' + value.replace('"', '""') + '"'


def connection_string(pairs: Sequence[tuple[str, str | None]], password: str | None) -> str:
    """The ADO.NET connection string of ``pairs``, ``password`` in the place marked None
    (left out when there is no password: integrated or trust authentication)."""
    parts = []
    for key, value in pairs:
        text = password if value is None else value
        if text is not None:
            parts.append(f"{key}={ado_value(text)}")
    return ";".join(parts)


def fill_target(
    plan: CommandPlan,
    fields: TargetFields,
    target: str = "the target",
    *,
    runbook: str = "",
    shown: bool = False,
) -> tuple[list[str], dict[str, str], list[str]]:
    """Fill ``{target.*}`` with the ``fields`` of the target named ``target`` → ``(argv,
    env, secrets)``. Secrets (the password, the connection string) go only into env values;
    ``secrets`` lists what to redact: the password's forms and every env value a secret was
    filled into. ``shown`` fills each secret with the password masked, for the dry run.
    Other placeholders are left as they are. A value the target lacks raises
    TargetFieldError naming the target, the field and what to do (``runbook`` names the
    runbook that needs it), never showing the URL."""
    password = MASK if shown and fields.password is not None else fields.password
    values = {"target.host": fields.host, "target.port": _text(fields.port)}
    values |= {"target.database": fields.database, "target.user": fields.user}
    values["target.password"] = password
    if fields.connection is not None:
        values["target.connection_string"] = connection_string(fields.connection, password)

    def fill(text: str, in_env: bool) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in TARGET_FIELDS | SECRET_FIELDS:
                return match.group(0)
            if name in SECRET_FIELDS and not in_env:
                why = f"argument {text!r} would show a secret to every process; use env"
                raise TargetFieldError(name, why)
            if (value := values.get(name)) is None:
                raise TargetFieldError(name, _lacking(name, fields, target, runbook))
            return value

        return _PLACEHOLDER.sub(one, text)

    argv = [fill(arg, in_env=False) for arg in plan.argv]
    env = {key: fill(value, in_env=True) for key, value in plan.env.items()}
    pw = "" if shown else fields.password or ""
    secrets = [pw, quote(pw, safe=""), quote_plus(pw), ado_value(pw)] if pw else []
    if not shown:
        secrets += [env[k] for k, v in plan.env.items() if placeholders(v) & SECRET_FIELDS]
    return argv, env, list(dict.fromkeys(s for s in secrets if s))


def _text(port: int | None) -> str | None:
    return None if port is None else str(port)


def _lacking(name: str, fields: TargetFields, target: str, runbook: str) -> str:
    """Why the target named ``target`` cannot fill ``{name}``, and what to do."""
    if fields.lacking:
        who = runbook or "this step"
        return (
            f"{who} needs a server target: target {target} is {fields.lacking}; plan it on a"
            " PostgreSQL or SQL Server target"
        )
    if name == "target.connection_string" and fields.connection is None:
        return f"the bot knows no connection string form for target {target}'s database"
    part = name.removeprefix("target.")
    return f"the URL of target {target} has no {part}; add one to that URL"


def show_target(
    steps: Sequence[PlannedStep], fields: TargetFields, target: str, runbook: str = ""
) -> list[PlannedStep]:
    """``steps`` with each command step's ``shown`` set: its command as it will run on the
    target of ``fields``, secrets masked, for the dry run. Raises TargetFieldError (naming
    the step, the field and the target) if a ``{target.*}`` placeholder cannot be filled
    here, so a plan that would fail mid-run is refused when it is made."""
    result: list[PlannedStep] = []
    for step in steps:
        if isinstance(step, PlannedCommand):
            try:
                argv, env, _ = fill_target(
                    step.command, fields, target, runbook=runbook, shown=True
                )
            except TargetFieldError as exc:
                raise exc.in_step(step.name) from None
            step = step.model_copy(update={"shown": CommandPlan(argv=tuple(argv), env=env)})
        result.append(step)
    return result


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
