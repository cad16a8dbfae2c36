"""Command steps: real child processes, streamed and redacted output, timeouts that leave no
process behind, and ``{target.*}`` filled from the target's URL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

from bot.adapters.commands import (
    _MAX_LINE,
    TargetFields,
    fill_target,
    run_command,
)
from bot.adapters.targets.dialects import dialect_for
from bot.domain.plan import CommandPlan
from bot.errors import CommandFailed, CommandTimeout, TargetFieldError

PY = sys.executable


def _fields(url: URL) -> TargetFields:
    """The fields of a target at ``url``, as its dialect reads them."""
    return dialect_for(url).command_fields(url)


# Starts a sleeping grandchild that inherits stdout, prints "<own pid> <grandchild pid>".
SPAWN = """
import os, signal, subprocess, sys, time
if "ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(os.getpid(), child.pid, flush=True)
if "exit" not in sys.argv:
    time.sleep(60)
"""


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


async def _gone(*pids: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.fixture
def spawned() -> Iterator[list[int]]:
    """Pids the test started; any still running at the end are killed."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def test_each_line_reaches_on_line_while_the_program_still_runs(tmp_path: Path) -> None:
    """The child waits for a file that only on_line creates: it deadlocks unless streamed."""
    go = tmp_path / "go"
    code = f"import os, time\nprint('first', flush=True)\nwhile not os.path.exists({str(go)!r}):"
    code += "\n    time.sleep(0.01)\nprint('second')"
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        go.touch()

    result = await run_command([PY, "-c", code], env={}, timeout=10, on_line=on_line)
    assert seen == ["first", "second"]
    assert (result.exit_code, result.lines, result.tail) == (0, 2, ["first", "second"])
    assert result.seconds > 0


async def test_stdout_and_stderr_are_merged_in_the_order_written() -> None:
    code = "import sys\nfor i in range(3):\n    print('out', i, flush=True)\n"
    code += "    print('err', i, file=sys.stderr, flush=True)"
    seen: list[str] = []
    await run_command([PY, "-c", code], env={}, timeout=10, on_line=seen.append)
    assert seen == ["out 0", "err 0", "out 1", "err 1", "out 2", "err 2"]


async def test_the_tail_keeps_the_last_lines_and_lines_counts_all() -> None:
    code = "for i in range(100): print(i)"
    result = await run_command([PY, "-c", code], env={}, timeout=10, tail_lines=3)
    assert (result.tail, result.lines) == (["97", "98", "99"], 100)


async def test_long_lines_bad_bytes_and_an_unterminated_last_line_are_tolerated() -> None:
    code = r"import sys; sys.stdout.buffer.write(b'a' * 300000 + b'\n\xff\xfe bad\r\nend')"
    seen: list[str] = []
    await run_command([PY, "-c", code], env={}, timeout=10, on_line=seen.append)
    assert seen[1:] == ["\ufffd\ufffd bad", "end"]
    cut = f" … [{300000 - _MAX_LINE} bytes cut]"  # compared in parts: a failure stays readable
    assert (len(seen[0]), seen[0].count("a"), seen[0][-len(cut) :]) == (
        _MAX_LINE + len(cut),
        _MAX_LINE,
        cut,
    )


async def test_a_secret_cut_off_with_a_long_line_is_masked() -> None:
    code = f"print('x' * {_MAX_LINE - 3} + 'hunter2')"
    seen: list[str] = []
    await run_command(
        [PY, "-c", code], env={}, timeout=10, secrets=["hunter2"], on_line=seen.append
    )
    assert "hun" not in seen[0] and seen[0][-24:] == "xxxxx*** … [4 bytes cut]"


async def test_a_non_zero_exit_raises_with_the_code_and_the_last_lines() -> None:
    code = "import sys\nfor i in range(5): print('line', i)\nsys.exit(7)"
    with pytest.raises(CommandFailed) as caught:
        await run_command([PY, "-c", code], env={}, timeout=10, tail_lines=2)
    assert (caught.value.exit_code, caught.value.tail) == (7, ["line 3", "line 4"])
    assert "exited with code 7; last 2 lines:\nline 3\nline 4" in str(caught.value)
    assert PY in str(caught.value)


async def test_a_program_killed_by_a_signal_names_the_signal() -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    with pytest.raises(CommandFailed, match="was killed by SIGKILL") as caught:
        await run_command([PY, "-c", code], env={}, timeout=10)
    assert caught.value.exit_code == -signal.SIGKILL


async def test_a_missing_program_says_to_install_it_on_the_bots_host() -> None:
    with pytest.raises(CommandFailed) as caught:
        await run_command(["barq-no-such-program", "--version"], env={}, timeout=10)
    assert caught.value.exit_code is None
    assert "program 'barq-no-such-program' was not found" in str(caught.value)
    assert "install it on the bot's host/image" in str(caught.value)


async def test_a_missing_working_directory_is_not_blamed_on_the_program(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed, match=r"working directory .* does not exist") as caught:
        await run_command([PY, "-V"], env={}, timeout=10, cwd=tmp_path / "nope")
    assert "not found" not in str(caught.value)


async def test_shell_metacharacters_stay_literal_arguments(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    args = [f"x; touch {marker}", "$(touch " + str(marker) + ")", "`id`", "a b", "*", "&&", "|"]
    code = "import json, sys; print(json.dumps(sys.argv[1:]))"
    result = await run_command([PY, "-c", code, *args], env={}, timeout=10)
    assert json.loads(result.tail[0]) == args
    assert not marker.exists()


async def test_the_child_gets_path_home_lang_and_env_but_not_the_bots_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-not-for-children")
    monkeypatch.setenv("BARQ_DATABASE_URL", "postgresql://bot:pw@state/db")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LANG", "C.UTF-8")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    env = {"ASPNETCORE_ENVIRONMENT": "Staging", "HOME": str(tmp_path / "override")}
    result = await run_command([PY, "-c", code], env=env, timeout=10, tail_lines=1)
    child = json.loads(result.tail[0])
    assert child == {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **env}


@needs_proc
async def test_a_timeout_kills_the_program_and_its_grandchildren(spawned: list[int]) -> None:
    with pytest.raises(CommandTimeout) as caught:
        await run_command(
            [PY, "-c", SPAWN],
            env={},
            timeout=1.5,
            grace=1,
            on_line=lambda line: spawned.extend(map(int, line.split())),
        )
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, CommandFailed)
    assert caught.value.exit_code is None
    assert caught.value.tail == [" ".join(map(str, spawned))]
    assert "did not finish within 1.5 s" in str(caught.value)
    assert len(spawned) == 2 and await _gone(*spawned)


@needs_proc
async def test_processes_ignoring_sigterm_are_killed_after_the_grace(spawned: list[int]) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        await run_command(
            [PY, "-c", SPAWN, "ignore-term"],
            env={},
            timeout=1.5,
            grace=0.3,
            on_line=lambda line: spawned.extend(map(int, line.split())),
        )
    assert len(spawned) == 2 and await _gone(*spawned, within=1.0)
    assert time.monotonic() - started < 5


@needs_proc
async def test_cancelling_kills_the_process_group_and_propagates(spawned: list[int]) -> None:
    ready = asyncio.Event()

    def on_line(line: str) -> None:
        spawned.extend(map(int, line.split()))
        ready.set()

    task = asyncio.create_task(
        run_command([PY, "-c", SPAWN], env={}, timeout=60, grace=1, on_line=on_line)
    )
    await asyncio.wait_for(ready.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(spawned) == 2 and await _gone(*spawned)


@needs_proc
async def test_what_the_program_leaves_running_is_killed_when_it_exits(
    spawned: list[int],
) -> None:
    """The grandchild holds the output pipe open: without the kill this would time out."""
    result = await run_command(
        [PY, "-c", SPAWN, "exit"],
        env={},
        timeout=10,
        on_line=lambda line: spawned.extend(map(int, line.split())),
    )
    assert result.exit_code == 0 and result.seconds < 5
    assert len(spawned) == 2 and await _gone(*spawned)


async def _failing(code: str, arg: str) -> tuple[list[str], CommandFailed]:
    """Run Python ``code`` (which must fail) with ``arg``, "hunter2" being the secret: the
    lines it wrote as shown, and the error."""
    seen: list[str] = []
    with pytest.raises(CommandFailed) as caught:
        await run_command(
            [PY, "-c", code, arg], env={}, timeout=10, secrets=["hunter2"], on_line=seen.append
        )
    return seen, caught.value


async def test_secrets_are_masked_in_lines_the_tail_and_the_error() -> None:
    code = "import sys\nprint('token', sys.argv[1], flush=True)\n"
    code += "print('dsn postgresql://app:s3cr%40t@db:5432/x', file=sys.stderr, flush=True)\n"
    code += "print('Server=db;Password=' + sys.argv[1] + ';')\nsys.exit(2)"
    seen, error = await _failing(code, "hunter2")
    assert seen == ["token ***", "dsn postgresql://app:***@db:5432/x", "Server=db;Password=***;"]
    assert error.tail == seen
    for leaked in ("hunter2", "s3cr"):
        assert leaked not in str(error)
    assert str(error).startswith(f"command `{PY} -c ")
    assert str(error).endswith("` exited with code 2; last 3 lines:\n" + "\n".join(seen))


async def test_text_that_only_looks_like_a_secret_is_left_readable() -> None:
    """Only real secrets are masked: a ``PWD=%s`` format string in the arguments and
    ``password=`` words in the output stay as they are, in the lines and in the error."""
    code = "import sys\nprint(sys.argv[1])\nprint('usage: --password=<pw> or PWD=<pw>')\n"
    code += "print('password=hunter2 Pwd = s3cret')\nsys.exit(1)"
    seen, error = await _failing(code, "PWD=%s;password=%s")
    assert seen == [
        "PWD=%s;password=%s",
        "usage: --password=<pw> or PWD=<pw>",
        "password=*** Pwd = s3cret",
    ]
    assert "PWD=%s;password=%s" in str(error)


async def test_an_env_value_carrying_the_password_is_masked_whole() -> None:
    """A connection string filled with ``{target.password}`` is a secret as a whole."""
    url = URL.create("mssql+pyodbc", "sa", "Str0ngPw", "sql01", None, "barq")
    conn = "Server={target.host};User Id={target.user};Password={target.password}"
    code = "import os; print('using', os.environ['CONN'])"
    plan = CommandPlan(argv=(PY, "-c", code), env={"CONN": conn, "DB": "{target.database}"})
    argv, env, secrets = fill_target(plan, _fields(url))
    assert env["CONN"] in secrets and "barq" not in secrets
    result = await run_command(argv, env=env, timeout=10, secrets=secrets)
    assert result.tail == ["using ***"]


def test_fill_target_puts_a_special_password_only_into_env() -> None:
    password = "p@ss:w/rd%{x} ;'\""
    url = URL.create("postgresql+psycopg", "barq", password, "db.internal", 5433, "barq_prod")
    plan = CommandPlan(
        argv=(
            "psql",
            "-h",
            "{target.host}",
            "-p",
            "{target.port}",
            "-U",
            "{target.user}",
            "{target.database}",
        ),
        env={"PGPASSWORD": "{target.password}", "PGAPPNAME": "barq {target.database}"},
    )
    argv, env, secrets = fill_target(
        plan, _fields(make_url(url.render_as_string(hide_password=False)))
    )
    assert argv == ["psql", "-h", "db.internal", "-p", "5433", "-U", "barq", "barq_prod"]
    assert env == {"PGPASSWORD": password, "PGAPPNAME": "barq barq_prod"}
    assert password in secrets and "p%40ss%3Aw%2Frd%25%7Bx%7D%20%3B%27%22" in secrets
    assert not any("p@ss" in arg for arg in argv)


def test_fill_target_uses_the_dialects_default_port_for_mssql() -> None:
    url = make_url("mssql+pyodbc://sa:Str0ng;Pw@sql01/barq?driver=ODBC+Driver+18+for+SQL+Server")
    plan = CommandPlan(
        argv=(
            "sqlcmd",
            "-S",
            "{target.host},{target.port}",
            "-d",
            "{target.database}",
            "-U",
            "{target.user}",
            "-Q",
            "SELECT 1",
        ),
        env={"SQLCMDPASSWORD": "{target.password}"},
    )
    argv, env, secrets = fill_target(plan, _fields(url))
    assert argv[1:7] == ["-S", "sql01,1433", "-d", "barq", "-U", "sa"]
    assert (env, secrets[0]) == ({"SQLCMDPASSWORD": "Str0ng;Pw"}, "Str0ng;Pw")


def test_fill_target_leaves_other_braces_and_does_not_refill_values() -> None:
    url = URL.create("postgresql", "{target.host}", None, "h", None, "d")
    plan = CommandPlan(argv=("kubectl", "-o", "jsonpath={.status}", "{other}", "{target.user}"))
    argv, env, secrets = fill_target(plan, _fields(url))
    assert argv == ["kubectl", "-o", "jsonpath={.status}", "{other}", "{target.host}"]
    assert (env, secrets) == ({}, [])


def test_fill_target_refuses_the_password_on_the_command_line() -> None:
    plan = CommandPlan(argv=("tool", "--password={target.password}"))
    with pytest.raises(TargetFieldError, match="use env") as caught:
        fill_target(plan, _fields(make_url("postgresql://u:topsecret@h/d")))
    assert "topsecret" not in str(caught.value)


def test_fill_target_names_a_value_the_url_lacks() -> None:
    plan = CommandPlan(argv=("tool", "{target.host}"), env={"PW": "{target.password}"})
    with pytest.raises(
        TargetFieldError, match=r"cannot fill \{target.password\}: the URL"
    ) as caught:
        fill_target(plan, _fields(make_url("postgresql://u@h/d")), "staging")
    assert "target staging has no password; add one to that URL" in str(caught.value)
    assert "://" not in str(caught.value)


async def test_a_filled_password_reaches_the_child_but_not_its_output() -> None:
    url = URL.create("postgresql", "barq", "hunter2", "db", None, "prod")
    code = "import os; print('pw', os.environ['PGPASSWORD'], os.environ['PGPASSWORD'] == "
    code += "'hunter2', '{target.user}@{target.host}:{target.port}')"
    plan = CommandPlan(argv=(PY, "-c", code), env={"PGPASSWORD": "{target.password}"})
    argv, env, secrets = fill_target(plan, _fields(url))
    result = await run_command(argv, env=env, timeout=10, secrets=secrets)
    assert result.tail == ["pw *** True barq@db:5432"]
