"""The runbook's C# ``MigrateUserPreferences``, transcribed into Python statement by statement,
with the parts of System.Text.Json it relies on (default options), for the oracle test.

This is written apart from the bot's hook (runbooks/hooks/user_preferences.py) and on purpose
in another way: it reads the JSON as ``Utf8JsonReader`` does (the .NET string transcoded to
UTF-8 bytes, a token at a time, a stack of open containers no deeper than 64), fills the
``LegacyPreferences`` class as the serializer's object converter does (ordinal, case-sensitive
names; unknown properties skipped; each occurrence of a property read in turn), and writes as
``Utf8JsonWriter`` does (``JsonWriterHelper.EscapeString`` with its ASCII allow-list, handing
the rest of a string to ``JavaScriptEncoder.Default`` at the first non-ASCII character). The
hook and this must agree on every input; tests/test_user_preferences_hook.py checks that.

The classes are not in the runbook; their shape is the one the procedure's code implies:
``bool`` DarkMode/EmailNotifications/PushNotifications, ``string`` Locale/TimeZone, and the
new classes' properties in the order the object initializers list them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, text

__all__ = [
    "InvalidOperationException",
    "JsonException",
    "NullReferenceException",
    "User",
    "migrate_user_preferences",
    "run_procedure",
    "serialize",
]


class JsonException(Exception):
    """System.Text.Json.JsonException: the text is not JSON, or not of the target's shape."""


class InvalidOperationException(Exception):
    """System.InvalidOperationException (e.g. an escaped string that is not valid UTF-16)."""


class ArgumentException(Exception):
    """System.ArgumentException (e.g. a .NET string that is not valid UTF-16)."""


class NullReferenceException(Exception):
    """System.NullReferenceException: a member of null was read."""


# -- the classes ------------------------------------------------------------------------------


@dataclass
class LegacyPreferences:
    DarkMode: bool = False
    Locale: str | None = None
    TimeZone: str | None = None
    EmailNotifications: bool = False
    PushNotifications: bool = False


@dataclass
class NotificationSettings:
    EmailEnabled: bool = False
    PushEnabled: bool = False


@dataclass
class UserPreferences:
    Theme: str | None = None
    Language: str | None = None
    Timezone: str | None = None
    NotificationSettings: NotificationSettings | None = None


@dataclass
class User:
    Id: int
    LegacyPreferences: str | None
    Preferences: str | None


# -- the procedure ----------------------------------------------------------------------------


def migrate_user_preferences(users: list[User]) -> None:
    """``foreach (var user in users)`` of the procedure, on users already loaded."""
    for user in users:
        # Migrate old preference format to new format
        if not string_is_null_or_empty(user.LegacyPreferences):
            assert user.LegacyPreferences is not None
            old_prefs = deserialize(user.LegacyPreferences)
            new_prefs = UserPreferences(
                Theme="dark" if member(old_prefs, "DarkMode") else "light",
                Language=coalesce(member(old_prefs, "Locale"), "en"),
                Timezone=coalesce(member(old_prefs, "TimeZone"), "UTC"),
                NotificationSettings=NotificationSettings(
                    EmailEnabled=member(old_prefs, "EmailNotifications"),
                    PushEnabled=member(old_prefs, "PushNotifications"),
                ),
            )
            user.Preferences = serialize(new_prefs)
            user.LegacyPreferences = None


def run_procedure(url: str, only: Callable[[User], bool] = lambda user: True) -> None:
    """``_context.Users.ToListAsync()`` (the users ``only`` keeps), the loop, then
    ``SaveChangesAsync()``: one transaction writing the users whose values changed. An
    exception in the loop propagates before anything is written, as in the procedure."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            found = conn.execute(text("SELECT Id, LegacyPreferences, Preferences FROM Users"))
            users = [User(int(i), legacy, prefs) for i, legacy, prefs in found]
            users = [u for u in users if only(u)]
            before = {u.Id: (u.LegacyPreferences, u.Preferences) for u in users}
            migrate_user_preferences(users)
            changed = [
                {"id": u.Id, "legacy": u.LegacyPreferences, "prefs": u.Preferences}
                for u in users
                if (u.LegacyPreferences, u.Preferences) != before[u.Id]
            ]
            if changed:
                conn.execute(
                    text(
                        "UPDATE Users SET Preferences = :prefs, LegacyPreferences = :legacy"
                        " WHERE Id = :id"
                    ),
                    changed,
                )
    finally:
        engine.dispose()


def string_is_null_or_empty(value: str | None) -> bool:
    """string.IsNullOrEmpty."""
    return value is None or len(value) == 0


def member(obj: Any, name: str) -> Any:
    """``obj.name``, which throws on null."""
    if obj is None:
        raise NullReferenceException(f"Object reference not set to an instance ({name})")
    return getattr(obj, name)


def coalesce(value: str | None, fallback: str) -> str:
    """``value ?? fallback``."""
    return fallback if value is None else value


# -- JsonSerializer.Deserialize<LegacyPreferences>(string) ------------------------------------

MAX_DEPTH = 64
_WS = b" \t\n\r"
_HEX = b"0123456789abcdefABCDEF"
_DIGITS = b"0123456789"
_ESCAPES = {ord('"'): '"', ord("\\"): "\\", ord("/"): "/", ord("b"): "\b", ord("f"): "\f"}
_ESCAPES |= {ord("n"): "\n", ord("r"): "\r", ord("t"): "\t"}


@dataclass
class Utf8JsonReader:
    """A token reader over UTF-8 JSON with the default JsonReaderOptions: no comments, no
    trailing commas, MaxDepth 64, one top-level value."""

    data: bytes
    pos: int = 0
    token: str = "None"
    value: bytes = b""  # the raw bytes of a string, property name or number token
    stack: list[str] = field(default_factory=list)  # "{" or "["
    expect: str = "value"  # value | name_or_end | name | colon | comma_or_end | value_or_end
    done: bool = False  # the top-level value is complete

    def read(self) -> bool:
        """Advance to the next token; False at the end of the data (after one value)."""
        self._skip_whitespace()
        if self.pos == len(self.data):
            if not self.done:
                raise JsonException("Expected a value but reached the end of the data")
            return False
        if self.done:
            raise JsonException(f"'{chr(self.data[self.pos])}' is invalid after a single value")
        byte = self.data[self.pos]
        if self.expect == "colon":
            if byte != ord(":"):
                raise JsonException("Expected ':' after a property name")
            self.pos += 1
            self.expect = "value"
            return self.read()
        if self.expect == "comma_or_end":
            if byte == ord(","):
                self.pos += 1
                self.expect = "name" if self.stack[-1] == "{" else "value"
                return self.read()
            return self._end(byte)
        if self.expect in ("name_or_end", "name"):
            if byte == ord("}") and self.expect == "name_or_end":
                return self._end(byte)
            if byte != ord('"'):
                raise JsonException("Expected a property name")
            self.value = self._string()
            self.token, self.expect = "PropertyName", "colon"
            return True
        if byte == ord("]") and self.expect == "value_or_end":
            return self._end(byte)
        self._value(byte)
        return True

    def skip(self) -> None:
        """Reader.Skip(): past the value whose first token was just read."""
        if self.token == "PropertyName":
            self.read()
        if self.token in ("StartObject", "StartArray"):
            depth = len(self.stack) - 1
            while len(self.stack) > depth:
                self.read()

    def get_string(self) -> str | None:
        """GetString() of a String, PropertyName or Null token; unescapes, and throws on an
        escaped surrogate that is not half of a pair."""
        if self.token == "Null":
            return None
        if self.token not in ("String", "PropertyName"):
            raise InvalidOperationException(f"Cannot get the value of a token type '{self.token}'")
        units: list[int] = []
        raw, i = self.value, 0
        while i < len(raw):
            if raw[i] != ord("\\"):
                end = raw.find(b"\\", i)
                end = len(raw) if end < 0 else end
                units.extend(_utf16(raw[i:end].decode("utf-8")))
                i = end
                continue
            kind = raw[i + 1]
            if kind != ord("u"):
                units.extend(_utf16(_ESCAPES[kind]))
                i += 2
                continue
            scalar = int(raw[i + 2 : i + 6], 16)
            i += 6
            if 0xD800 <= scalar <= 0xDFFF:
                if scalar >= 0xDC00:
                    raise InvalidOperationException(f"Invalid surrogate value: {scalar:#X}")
                if raw[i : i + 2] != b"\\u":
                    raise InvalidOperationException("Incomplete surrogate pair")
                low = int(raw[i + 2 : i + 6], 16)
                if not 0xDC00 <= low <= 0xDFFF:
                    raise InvalidOperationException(f"Invalid surrogate value: {low:#X}")
                units.extend((scalar, low))
                i += 6
                continue
            units.append(scalar)
        return b"".join(u.to_bytes(2, "big") for u in units).decode("utf-16-be")

    def _end(self, byte: int) -> bool:
        want = {"{": ord("}"), "[": ord("]")}[self.stack[-1]]
        if byte != want:
            raise JsonException(f"'{chr(byte)}' is invalid here")
        self.pos += 1
        self.token = "EndObject" if self.stack.pop() == "{" else "EndArray"
        self._after_value()
        return True

    def _value(self, byte: int) -> None:
        if byte in (ord("{"), ord("[")):
            if len(self.stack) >= MAX_DEPTH:
                raise JsonException(f"The maximum configured depth of {MAX_DEPTH} is exceeded")
            self.pos += 1
            self.stack.append(chr(byte))
            is_object = byte == ord("{")
            self.token = "StartObject" if is_object else "StartArray"
            self.expect = "name_or_end" if is_object else "value_or_end"
            return
        if byte == ord('"'):
            self.value, self.token = self._string(), "String"
        elif byte == ord("-") or byte in _DIGITS:
            self.value, self.token = self._number(), "Number"
        else:
            for literal, token in ((b"true", "True"), (b"false", "False"), (b"null", "Null")):
                if self.data.startswith(literal, self.pos):
                    self.pos += len(literal)
                    self.token = token
                    break
            else:
                raise JsonException(f"'{chr(byte)}' is an invalid start of a value")
        self._after_value()

    def _after_value(self) -> None:
        if self.stack:
            self.expect = "comma_or_end"
        else:
            self.done = True

    def _string(self) -> bytes:
        start = self.pos = self.pos + 1
        while True:
            if self.pos >= len(self.data):
                raise JsonException("Expected end of string, but instead reached end of data")
            byte = self.data[self.pos]
            if byte == ord('"'):
                self.pos += 1
                return self.data[start : self.pos - 1]
            if byte < 0x20:
                raise JsonException(f"'{byte:#04x}' is invalid within a JSON string")
            if byte == ord("\\"):
                kind = self.data[self.pos + 1 : self.pos + 2]
                if kind == b"u":
                    digits = self.data[self.pos + 2 : self.pos + 6]
                    if len(digits) != 4 or any(d not in _HEX for d in digits):
                        raise JsonException("Invalid hex digits in a \\u escape")
                    self.pos += 6
                    continue
                if not kind or kind[0] not in _ESCAPES:
                    raise JsonException(f"'{kind!r}' is not a valid escape")
                self.pos += 2
                continue
            self.pos += 1

    def _number(self) -> bytes:
        data, start = self.data, self.pos

        def digits(at: int) -> int:
            end = at
            while end < len(data) and data[end] in _DIGITS:
                end += 1
            if end == at:
                raise JsonException("Expected a digit in a number")
            return end

        at = start + (data[start] == ord("-"))
        if at < len(data) and data[at] == ord("0"):
            at += 1
        else:
            at = digits(at)
        if at < len(data) and data[at] == ord("."):
            at = digits(at + 1)
        if at < len(data) and data[at] in b"eE":
            at += 1
            if at < len(data) and data[at] in b"+-":
                at += 1
            at = digits(at)
        if at < len(data) and data[at] not in _WS + b",]}":
            raise JsonException("Invalid end of a number")
        self.pos = at
        return data[start:at]

    def _skip_whitespace(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] in _WS:
            self.pos += 1


def _utf16(text: str) -> list[int]:
    encoded = text.encode("utf-16-be")
    return [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]


def _read_bool(reader: Utf8JsonReader) -> bool:
    """The Boolean converter: only true and false (null is no bool)."""
    if reader.token == "True":
        return True
    if reader.token == "False":
        return False
    raise JsonException(f"The JSON value could not be converted to System.Boolean ({reader.token})")


def _read_string(reader: Utf8JsonReader) -> str | None:
    """The String converter: a string or null."""
    if reader.token not in ("String", "Null"):
        raise JsonException(
            f"The JSON value could not be converted to System.String ({reader.token})"
        )
    return reader.get_string()


_PROPERTIES: dict[str, Callable[[Utf8JsonReader], Any]] = {
    "DarkMode": _read_bool,
    "Locale": _read_string,
    "TimeZone": _read_string,
    "EmailNotifications": _read_bool,
    "PushNotifications": _read_bool,
}


def deserialize(json: str) -> LegacyPreferences | None:
    """JsonSerializer.Deserialize<LegacyPreferences>(json): null for the literal null."""
    try:
        data = json.encode("utf-8")  # the transcoding of the .NET string
    except UnicodeEncodeError as exc:
        raise ArgumentException(f"Cannot transcode invalid UTF-16 ({exc.reason})") from exc
    reader = Utf8JsonReader(data)
    reader.read()
    if reader.token == "Null":
        result = None
    elif reader.token != "StartObject":
        raise JsonException("The JSON value could not be converted to LegacyPreferences")
    else:
        result = LegacyPreferences()
        while reader.read() and reader.token != "EndObject":
            name = reader.get_string()
            assert name is not None
            converter = _PROPERTIES.get(name)  # ordinal: case-sensitive
            reader.read()
            if converter is None:
                reader.skip()
                continue
            setattr(result, name, converter(reader))
    if reader.read():  # after the one value, only whitespace may follow
        raise JsonException("More than one top-level value")
    return result


# -- JsonSerializer.Serialize(UserPreferences) ------------------------------------------------

# JsonWriterHelper.AllowList, U+0000..U+007F: printable ASCII but " & ' + < > \ ` and DEL
_ALLOW_LIST = (
    [0] * 32
    + [1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1]  # U+0020..U+002F
    + [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1]  # U+0030..U+003F
    + [1] * 16  # U+0040..U+004F
    + [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1]  # U+0050..U+005F
    + [0]
    + [1] * 15  # U+0060..U+006F
    + [1] * 15
    + [0]  # U+0070..U+007F
)
_SHORT_ESCAPES = {0x0A: "n", 0x0D: "r", 0x09: "t", 0x5C: "\\", 0x08: "b", 0x0C: "f"}


def _default_encoder_will_encode(scalar: int) -> bool:
    """JavaScriptEncoder.Default.WillEncode: only Basic Latin is allowed, less its controls,
    the HTML-sensitive characters (< > & ' " +), the backslash and the grave accent."""
    return not (0x20 <= scalar <= 0x7E and chr(scalar) not in "<>&'\"+\\`")


def _default_encoder_encode(units: list[int]) -> str:
    """JavaScriptEncoder.Default.Encode over UTF-16 code units, a scalar at a time."""
    out, i = [], 0
    while i < len(units):
        unit = units[i]
        if 0xD800 <= unit <= 0xDBFF and i + 1 < len(units) and 0xDC00 <= units[i + 1] <= 0xDFFF:
            scalar = 0x10000 + ((unit - 0xD800) << 10) + (units[i + 1] - 0xDC00)
            i += 2
        elif 0xD800 <= unit <= 0xDFFF:
            raise ArgumentException(f"Cannot encode invalid UTF-16 text ({unit:#X})")
        else:
            scalar = unit
            i += 1
        if not _default_encoder_will_encode(scalar):
            out.append(chr(scalar))
        elif scalar in (0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x5C):
            out.append("\\" + _SHORT_ESCAPES[scalar])
        elif scalar > 0xFFFF:
            high = 0xD800 + ((scalar - 0x10000) >> 10)
            low = 0xDC00 + ((scalar - 0x10000) & 0x3FF)
            out.append(f"\\u{high:04X}\\u{low:04X}")
        else:
            out.append(f"\\u{scalar:04X}")
    return "".join(out)


def _escape_string(value: str) -> str:
    """Utf8JsonWriter.WriteStringValue's escaping with no encoder set (JsonWriterHelper)."""
    units = _utf16(value)
    first = next((k for k, u in enumerate(units) if u > 0x7F or not _ALLOW_LIST[u]), -1)
    if first == -1:
        return value
    out = [value_of(units[:first])]
    k = first
    while k < len(units):
        unit = units[k]
        if unit <= 0x7F:
            if not _ALLOW_LIST[unit]:
                short = _SHORT_ESCAPES.get(unit)
                out.append("\\" + (short if short else f"u{unit:04X}"))
            else:
                out.append(chr(unit))
            k += 1
        else:  # fall back to the default encoder for the rest
            out.append(_default_encoder_encode(units[k:]))
            break
    return "".join(out)


def value_of(units: list[int]) -> str:
    """A string from UTF-16 code units."""
    return b"".join(u.to_bytes(2, "big") for u in units).decode("utf-16-be")


def _write(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{_escape_string(value)}"'
    names = list(value.__dataclass_fields__)  # declaration order
    return "{" + ",".join(f'"{n}":{_write(getattr(value, n))}' for n in names) + "}"


def serialize(value: UserPreferences) -> str:
    """JsonSerializer.Serialize(value) with the default options: compact, declaration order,
    nulls written, the default escaping."""
    return _write(value)
