"""Parsing /migrate text: every mistake says what was wrong and what to type instead."""

from __future__ import annotations

import contextlib
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import UsageError
from handlers.parse import MAX_TEXT, SUBCOMMANDS, Command, parse, split


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


def test_text_beyond_the_limit_is_refused_before_parsing_with_the_limit_and_what_to_do() -> None:
    """A huge text gets a message naming its length, the limit and how to shorten it."""
    text = "plan r note=" + "x" * 1_000_000 + " on=staging"
    with pytest.raises(UsageError) as info:
        parse(text)
    message = str(info.value)
    assert f"{len(text):,} characters long" in message
    assert "at most 4,000" in message and "short values" in message
    with pytest.raises(UsageError, match="at most 4,000"):
        parse("'" * (MAX_TEXT + 1))  # refused before the quotes are even looked at


_ROOM = MAX_TEXT - len("plan r note= on=staging") - 2
_HEAD, _TAIL = "plan r note=", " on=staging"


@pytest.mark.parametrize(
    ("text", "note"),
    [
        (_HEAD + '"' + 'a\\"' * (_ROOM // 3) + '"' + _TAIL, 'a"' * (_ROOM // 3)),
        (_HEAD + "\\ " * (_ROOM // 2) + _TAIL, " " * (_ROOM // 2)),
        (_HEAD + "''" * (_ROOM // 2) + _TAIL, ""),
        (_HEAD + '"' + "\\\\" * (_ROOM // 2) + '"' + _TAIL, "\\" * (_ROOM // 2)),
    ],
    ids=["escaped-quotes", "escaped-blanks", "empty-quotes", "backslashes-quoted"],
)
def test_the_worst_text_just_under_the_limit_is_parsed(text: str, note: str) -> None:
    """Quotes and backslashes right up to the limit are read as usual."""
    assert MAX_TEXT - 4 <= len(text) <= MAX_TEXT
    assert parse(text) == Command("plan", runbook="r", params={"note": note}, target="staging")


def test_an_unclosed_quote_after_thousands_of_backslashes_says_check_your_quotes() -> None:
    """The longest unclosed quote still gets the usual message."""
    with pytest.raises(UsageError, match=r"No closing quotation.*check your quotes"):
        parse(_HEAD + '"' + "\\\\" * (_ROOM // 2))


_SHELLISH = st.text(alphabet=st.sampled_from(list("ab=1 \t\n\"'\\#“”‘’é\xa0;")), max_size=40)


@settings(max_examples=300, deadline=500)
@given(_SHELLISH)
def test_split_splits_as_shlex_does(text: str) -> None:
    """The one-pass tokenizer gives shlex's words, or shlex's error, for any text."""
    try:
        expected: list[str] | str = shlex.split(text)
    except ValueError as exc:
        expected = str(exc)
    try:
        got: list[str] | str = split(text)
    except ValueError as exc:
        got = str(exc)
    assert got == expected


@settings(max_examples=200, deadline=500)
@given(
    st.one_of(
        st.text(max_size=200),
        st.builds(" ".join, st.lists(st.sampled_from([*SUBCOMMANDS, "r", "on=x", "a=1", "#3"]))),
        _SHELLISH.map(lambda rest: "plan r " + rest),
    )
)
def test_parse_returns_a_command_or_raises_usage_error(text: str) -> None:
    """Whatever is typed, parse gives a Command or a UsageError, never another exception."""
    with contextlib.suppress(UsageError):
        assert isinstance(parse(text), Command)
