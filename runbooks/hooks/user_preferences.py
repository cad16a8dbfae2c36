"""Row hook of user-profile-updates: the runbook's C# ``MigrateUserPreferences``, row by row.

The procedure does, for each user whose LegacyPreferences is not null or empty::

    var oldPrefs = JsonSerializer.Deserialize<LegacyPreferences>(user.LegacyPreferences);
    user.Preferences = JsonSerializer.Serialize(new UserPreferences { Theme = oldPrefs.DarkMode
        ? "dark" : "light", Language = oldPrefs.Locale ?? "en", Timezone = oldPrefs.TimeZone
        ?? "UTC", NotificationSettings = new NotificationSettings { EmailEnabled =
        oldPrefs.EmailNotifications, PushEnabled = oldPrefs.PushNotifications } });
    user.LegacyPreferences = null;

This hook writes, byte for byte, what that code writes with System.Text.Json's default options:

- Reading: the root must be an object; property names match case-sensitively (``darkMode`` is
  an unknown property, and unknown properties are skipped), a missing property keeps its
  default (false, or null for a string), a repeated one takes its last value. DarkMode,
  EmailNotifications and PushNotifications are ``bool`` (only ``true``/``false``; null is an
  error), Locale and TimeZone are ``string`` (a string or null). Strict JSON: no comments,
  trailing commas, NaN or Infinity; at most 64 levels of nesting; ``\\uD800`` escapes that are
  not a surrogate pair are an error in a name and in a string the class reads.
- Writing: compact, properties in declaration order, named as declared (PascalCase), strings
  escaped as ``JavaScriptEncoder.Default`` does: printable ASCII stays, except ``" & ' + < >
  \\ ` `` (``\\`` as ``\\\\``, the others as ``\\u0022`` etc.); ``\\b \\t \\n \\f \\r`` stay short;
  every other character, all of non-ASCII included, becomes ``\\uXXXX`` in upper-case hex, a
  character beyond U+FFFF as its UTF-16 surrogate pair.

Where the C# code would throw (a text that is not JSON, a property of the wrong JSON type, a
root that is not an object, or the literal ``null``, whose NullReferenceException aborts the
whole SaveChanges), this hook raises :class:`RowSkipped` with the reason instead: the row is
left unchanged and reported, and the other users are migrated.
"""

from __future__ import annotations

import json
from typing import Any

from bot.hooks import RowSkipped

__all__ = ["migrate", "preferences"]

COLUMN = "LegacyPreferences"
MAX_DEPTH = 64  # System.Text.Json's default JsonSerializerOptions.MaxDepth
LEGACY_TYPES: dict[str, type] = {  # class LegacyPreferences, as the procedure uses it
    "DarkMode": bool,
    "Locale": str,
    "TimeZone": str,
    "EmailNotifications": bool,
    "PushNotifications": bool,
}
_PLAIN = frozenset(map(chr, range(0x20, 0x7F))) - set("\"&'+<>\\`")
_SHORT = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", "\\": "\\\\"}


class _Object(list[tuple[str, Any]]):
    """A JSON object as read: its (name, value) pairs in order, repeats kept."""


class _Number(str):
    """A JSON number as read, kept as its text: no property reads one, so its value does not
    matter (and no digit-count or float-range limit of Python's applies)."""


def migrate(row: dict[str, Any]) -> dict[str, Any] | None:
    """New Preferences from the row's LegacyPreferences, which is cleared; None leaves a row
    whose LegacyPreferences is NULL or '' alone (as ``string.IsNullOrEmpty`` does); raises
    RowSkipped for a value the procedure would throw on."""
    legacy = row.get(COLUMN)
    if legacy is None or legacy == "":
        return None
    return {"Preferences": preferences(legacy), COLUMN: None}


def preferences(legacy: str) -> str:
    """The Preferences JSON the procedure writes for the LegacyPreferences text ``legacy``."""
    old = _read(legacy)
    dark, locale, zone = old.get("DarkMode", False), old.get("Locale"), old.get("TimeZone")
    email, push = old.get("EmailNotifications", False), old.get("PushNotifications", False)
    return (
        f'{{"Theme":{_string("dark" if dark else "light")},'
        f'"Language":{_string("en" if locale is None else locale)},'
        f'"Timezone":{_string("UTC" if zone is None else zone)},'
        f'"NotificationSettings":{{"EmailEnabled":{_bool(email)},"PushEnabled":{_bool(push)}}}}}'
    )


def _read(legacy: str) -> dict[str, Any]:
    """The LegacyPreferences properties ``legacy`` sets (last one wins), type-checked."""
    if _broken_utf16(legacy):
        raise RowSkipped(f"{COLUMN} is not valid UTF-16 text (a lone surrogate)")
    try:
        root = json.loads(
            legacy,
            object_pairs_hook=_Object,
            parse_int=_Number,
            parse_float=_Number,
            parse_constant=_not_json,
        )
    except RecursionError:
        raise RowSkipped(f"{COLUMN} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise RowSkipped(f"{COLUMN} is not valid JSON ({exc})") from None
    if _depth(root) > MAX_DEPTH:
        raise RowSkipped(f"{COLUMN} nests deeper than {MAX_DEPTH} levels")
    if root is None:
        raise RowSkipped(
            f"{COLUMN} is the JSON literal null (the procedure would throw NullReferenceException)"
        )
    if not isinstance(root, _Object):
        raise RowSkipped(f"{COLUMN} is {_kind(root)}, not a JSON object")
    found: dict[str, Any] = {}
    for name, value in root:
        if _broken_utf16(name):
            raise RowSkipped(f"{COLUMN} has a property name with a lone surrogate escape")
        want = LEGACY_TYPES.get(name)
        if want is bool and type(value) is not bool:
            raise RowSkipped(f"{COLUMN}.{name} is {_kind(value)}, want true or false")
        if want is str and value is not None and type(value) is not str:
            raise RowSkipped(f"{COLUMN}.{name} is {_kind(value)}, want a string or null")
        if want is str and value is not None and _broken_utf16(value):
            raise RowSkipped(f"{COLUMN}.{name} has a lone surrogate escape")
        if want is not None:
            found[name] = value
    return found


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON value")


def _broken_utf16(text: str) -> bool:
    """Whether ``text`` holds a surrogate code point: in a Python str (as json.loads makes
    of an escape like \\uD800 that is not part of a pair) it cannot be a valid pair."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _depth(value: Any) -> int:
    """Levels of nesting of objects and arrays (a flat object is 1), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, _Object):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for _, v in item)
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, _Number):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an object" if isinstance(value, _Object) else "an array"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _string(text: str) -> str:
    """``text`` as a JSON string, escaped as System.Text.Json's default encoder does."""
    out = ['"']
    for ch in text:
        if ch in _PLAIN:
            out.append(ch)
        elif ch in _SHORT:
            out.append(_SHORT[ch])
        else:
            units = ch.encode("utf-16-be")
            out.extend(f"\\u{units[i] << 8 | units[i + 1]:04X}" for i in range(0, len(units), 2))
    out.append('"')
    return "".join(out)
