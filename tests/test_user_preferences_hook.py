"""The shipped hook of user-profile-updates (runbooks/hooks/user_preferences.py) on its own:
what System.Text.Json with default options writes for tricky legacy values (escaping, types,
casing), which values it refuses (RowSkipped, where the C# code throws), and, over thousands of
generated values, agreement with the C# transcription in tests/csharp_user_preferences.py."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.targets.batch_hooks import hook_digest, load_hook
from bot.domain.batching import BatchSettings
from bot.domain.plan import BatchPlan
from bot.hooks import RowSkipped
from tests import csharp_user_preferences as csharp

RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"
HOOK = "hooks/user_preferences.py:migrate"
DEFAULTS = '"NotificationSettings":{"EmailEnabled":false,"PushEnabled":false}}'


@pytest.fixture(scope="module")
def migrate() -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """The hook as the batch runner loads it (pinned by its digest)."""
    plan = BatchPlan(
        table="Users",
        key="Id",
        where_sql=None,
        settings=BatchSettings(),
        hook=HOOK,
        hook_digest=hook_digest(RUNBOOKS, HOOK),
        read=("LegacyPreferences",),
        write=("Preferences", "LegacyPreferences"),
    )
    return load_hook(RUNBOOKS, plan)


def prefs(migrate: Callable[[dict[str, Any]], dict[str, Any] | None], legacy: str) -> str:
    changed = migrate({"LegacyPreferences": legacy})
    assert changed is not None and changed["LegacyPreferences"] is None
    value = changed["Preferences"]
    assert isinstance(value, str)
    return value


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [
        ("{}", '{"Theme":"light","Language":"en","Timezone":"UTC",' + DEFAULTS),
        (
            '{"DarkMode": true, "Locale": "de-DE", "TimeZone": "Europe/Berlin",'
            ' "EmailNotifications": true, "PushNotifications": true}',
            '{"Theme":"dark","Language":"de-DE","Timezone":"Europe/Berlin",'
            '"NotificationSettings":{"EmailEnabled":true,"PushEnabled":true}}',
        ),
        # names are case-sensitive: none of these is a LegacyPreferences property
        (
            '{"darkMode": true, "DARKMODE": true, "locale": "fr", "Timezone": "Asia/Tokyo",'
            ' "emailNotifications": true}',
            '{"Theme":"light","Language":"en","Timezone":"UTC",' + DEFAULTS,
        ),
        # an escaped name is matched once unescaped; unknown properties of any shape are skipped
        (
            '{"Dark\\u004Dode": true, "Extra": {"a": [1, 2.5e3, null, {"b": "\\ud800"}]}}',
            '{"Theme":"dark","Language":"en","Timezone":"UTC",' + DEFAULTS,
        ),
        # '' is kept (?? only replaces null); null takes the default; the last repeat wins
        ('{"Locale": "", "TimeZone": null}', '{"Theme":"light","Language":"","Timezone":"UTC",'),
        ('{"Locale": "fr", "Locale": null}', '{"Theme":"light","Language":"en","Timezone":"UTC",'),
        ('{"Locale": "fr", "Locale": "it"}', '{"Theme":"light","Language":"it","Timezone":"UTC",'),
        # the default encoder: HTML-sensitive characters as \u00XX, upper-case hex
        (
            '{"Locale": "<a href=\'x\'>&+`\\"\\\\/~"}',
            '{"Theme":"light","Language":"\\u003Ca href=\\u0027x\\u0027\\u003E\\u0026\\u002B'
            '\\u0060\\u0022\\\\/~",',
        ),
        # controls: short forms where JSON has them, else \u00XX; DEL too
        (
            '{"Locale": "\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f"}',
            '{"Theme":"light","Language":"\\b\\f\\n\\r\\t\\u0001\\u001F\\u007F",',
        ),
        # every non-ASCII character escaped, beyond U+FFFF as its surrogate pair
        (
            '{"Locale": "zh-Hant-TW 中文 ß",'
            ' "TimeZone": "América/São_Paulo 😀\\ud83d\\ude00\u2028"}',
            '{"Theme":"light","Language":"zh-Hant-TW \\u4E2D\\u6587 \\u00DF",'
            '"Timezone":"Am\\u00E9rica/S\\u00E3o_Paulo \\uD83D\\uDE00\\uD83D\\uDE00\\u2028",',
        ),
        ('\n\t {"DarkMode" : false , "PushNotifications":true}\r\n ', '{"Theme":"light",'),
        # numbers are only skipped: no limit on their digits or range
        ('{"x": 1' + "0" * 5000 + ', "y": -1.5e999}', '{"Theme":"light",'),
    ],
)
def test_the_hook_writes_what_system_text_json_writes(
    migrate: Callable[[dict[str, Any]], dict[str, Any] | None], legacy: str, expected: str
) -> None:
    written = prefs(migrate, legacy)
    assert written.startswith(expected)
    assert written == _transcribed(legacy)


@pytest.mark.parametrize(
    ("legacy", "reason"),
    [
        ("not json", "not valid JSON (Expecting value"),
        ("   ", "not valid JSON"),
        ('{"DarkMode": true,}', "not valid JSON"),
        ('{"DarkMode": true} {}', "not valid JSON (Extra data"),
        ("{'DarkMode': true}", "not valid JSON"),
        ('{"DarkMode": true /* dark */}', "not valid JSON"),
        ('{"x": NaN}', "NaN is not a JSON value"),
        ('{"x": -Infinity}', "-Infinity is not a JSON value"),
        ('{"x": 01}', "not valid JSON"),
        ('{"Locale": "tab\there"}', "not valid JSON (Invalid control character"),
        ('{"DarkMode": "yes"}', "LegacyPreferences.DarkMode is a string, want true or false"),
        ('{"DarkMode": 1}', "LegacyPreferences.DarkMode is a number, want true or false"),
        ('{"PushNotifications": null}', "PushNotifications is null, want true or false"),
        ('{"Locale": 5}', "LegacyPreferences.Locale is a number, want a string or null"),
        ('{"Locale": 1e999}', "LegacyPreferences.Locale is a number, want a string or null"),
        ('{"TimeZone": ["UTC"]}', "LegacyPreferences.TimeZone is an array, want a string"),
        ('{"Locale": true}', "LegacyPreferences.Locale is a boolean, want a string or null"),
        ('{"Locale": "fr", "DarkMode": {}}', "DarkMode is an object, want true or false"),
        ('{"DarkMode": "yes", "DarkMode": true}', "DarkMode is a string"),  # read in turn
        ("null", "is the JSON literal null (the procedure would throw NullReferenceException)"),
        ("[]", "LegacyPreferences is an array, not a JSON object"),
        ('"{}"', "LegacyPreferences is a string, not a JSON object"),
        ("true", "LegacyPreferences is a boolean, not a JSON object"),
        ('{"Locale": "\\ud800"}', "LegacyPreferences.Locale has a lone surrogate escape"),
        ('{"Locale": "\\udc00\\ud800"}', "lone surrogate escape"),
        ('{"\\ud800": 1}', "a property name with a lone surrogate escape"),
        ('{"Locale": "\ud800"}', "not valid UTF-16 text"),
        ('{"x": ' + "[" * 64 + "]" * 64 + "}", "nests deeper than 64 levels"),
        ("[" * 5000 + "]" * 5000, "nests deeper than 64 levels"),
    ],
)
def test_a_value_the_procedure_throws_on_is_skipped_with_its_reason(
    migrate: Callable[[dict[str, Any]], dict[str, Any] | None], legacy: str, reason: str
) -> None:
    with pytest.raises(RowSkipped) as skipped:
        migrate({"LegacyPreferences": legacy})
    assert reason in skipped.value.reason
    assert _transcribed(legacy) is None, "the C# transcription must throw on it too"


def test_sixty_four_levels_are_read(
    migrate: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> None:
    """System.Text.Json's default MaxDepth is 64: the root object and 63 arrays inside."""
    legacy = '{"x": ' + "[" * 63 + "]" * 63 + ', "DarkMode": true}'
    assert prefs(migrate, legacy).startswith('{"Theme":"dark"')
    assert _transcribed(legacy) == prefs(migrate, legacy)


@pytest.mark.parametrize("legacy", [None, ""])
def test_null_and_empty_legacy_text_is_left_alone(
    migrate: Callable[[dict[str, Any]], dict[str, Any] | None], legacy: str | None
) -> None:
    """string.IsNullOrEmpty: the procedure does not touch the row, nor does the hook."""
    assert migrate({"LegacyPreferences": legacy}) is None


def test_the_hook_agrees_with_the_csharp_transcription_on_generated_values(
    migrate: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> None:
    """Thousands of legacy texts, valid and broken: where the transcription throws the hook
    skips the row, and elsewhere both write the same Preferences."""
    rng = random.Random(20261129)
    seen = {"valid": 0, "invalid": 0}
    for _ in range(4000):
        legacy = _mutated(rng, _object(rng, 0))
        expected = _transcribed(legacy)
        try:
            written: str | None = prefs(migrate, legacy) if legacy else None
        except RowSkipped:
            written = None
        assert written == expected, f"hook and transcription differ on {legacy!r}"
        seen["valid" if expected is not None else "invalid"] += 1
    assert min(seen.values()) > 800, seen


def _transcribed(legacy: str) -> str | None:
    """What the C# transcription writes to Preferences, or None where it throws."""
    user = csharp.User(1, legacy, None)
    try:
        csharp.migrate_user_preferences([user])
    except (
        csharp.JsonException,
        csharp.InvalidOperationException,
        csharp.ArgumentException,
        csharp.NullReferenceException,
    ):
        return None
    return user.Preferences


_NAMES = [
    "DarkMode",
    "Locale",
    "TimeZone",
    "EmailNotifications",
    "PushNotifications",
    "darkMode",
    "locale",
    "Timezone",
    "PUSHNOTIFICATIONS",
    "Extra",
    "Dark\\u004Dode",
    "Loc\\u0061le",
    "$id",
    "",
    "\\ud800x",
]
_PIECES = [
    "a",
    "Z",
    "0",
    " ",
    "/",
    "é",
    "日",
    "😀",
    "\u2028",
    "\x7f",
    "<",
    ">",
    "&",
    "'",
    "+",
    "`",
    "~",
    '\\"',
    "\\\\",
    "\\/",
    "\\n",
    "\\t",
    "\\b",
    "\\u0000",
    "\\u001F",
    "\\u00e9",
    "\\uD83D\\uDE00",
    "\\ud800",
    "\\udc00",
]


def _string(rng: random.Random) -> str:
    return '"' + "".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 6))) + '"'


def _value(rng: random.Random, depth: int) -> str:
    pick = rng.randrange(10)
    if pick < 2:
        return rng.choice(["true", "false"])
    if pick < 3:
        return "null"
    if pick < 4:
        return rng.choice(["0", "-1", "2.5", "1e10", "-0.0E-2", "12345678901234567890"])
    if pick < 7 or depth > 3:
        return _string(rng)
    if pick < 8:
        items = [_value(rng, depth + 1) for _ in range(rng.randrange(0, 3))]
        return "[" + ",".join(items) + "]"
    return _object(rng, depth + 1)


def _object(rng: random.Random, depth: int) -> str:
    space = rng.choice(["", " ", "\n  "])
    pairs = [
        f'"{rng.choice(_NAMES)}"{space}:{space}{_value(rng, depth)}'
        for _ in range(rng.randrange(0, 6))
    ]
    return "{" + space + f",{space}".join(pairs) + space + "}"


def _mutated(rng: random.Random, text: str) -> str:
    """``text``, or (one time in three) with a character dropped, added or changed."""
    if rng.random() > 0.33 or not text:
        return text
    at = rng.randrange(len(text))
    edit = rng.choice([",", "}", "]", "[", '"', ":", "\\", "x", " ", "0", "n"])
    kind = rng.randrange(3)
    if kind == 0:
        return text[:at] + text[at + 1 :]
    if kind == 1:
        return text[:at] + edit + text[at:]
    return text[:at] + edit + text[at + 1 :]
