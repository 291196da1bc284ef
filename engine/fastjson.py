"""JSON for the one-shot CLI's path, without the cost of importing the ``json`` package.

``import json`` loads ``re`` (and with it ``enum``, ``functools``, ``collections``): on a
``lacrimosa ps`` that is several milliseconds of a call whose whole budget is a few. The work
itself is done by ``_json``, CPython's C accelerator, which ``json`` uses too: these functions call
it directly, with the very arguments ``json.dumps``/``json.loads`` would pass, so the text and the
values are the same (tests/test_fastjson.py checks that against ``json`` on generated data).
``json`` itself is imported only where these do not apply: ``_json`` missing (another Python),
data that is not plain JSON data (non-string keys, other types), error messages.

:func:`json_text` is JSON with every control character escaped as ``\\uXXXX``: C0 (``json``
already does it), DEL and C1 (``json`` with ``ensure_ascii=False`` leaves them raw), the Unicode
line separators and lone surrogates. Non-ASCII text otherwise stays as it is (``ensure_ascii=True``
would make every accented or CJK character six bytes). ``re`` is imported only for a document
that has such a character.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    import re
    from typing import Any

try:
    import _json
except ImportError:  # not CPython: the json package does it all
    _json = None  # type: ignore[assignment]

# What json.loads maps the non-standard constants to (json.decoder._CONSTANTS).
_INFINITY = float("inf")
_CONSTANTS = {"-Infinity": -_INFINITY, "Infinity": _INFINITY, "NaN": float("nan")}
_WHITESPACE = " \t\n\r"  # JSON's


class _Decoding:
    """The settings ``json.JSONDecoder()`` hands its C scanner (the defaults of ``json.loads``)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


# It reads those attributes (typeshed wants a JSONDecoder).
_scan = _json.make_scanner(_Decoding()) if _json is not None else None  # type: ignore[arg-type]


def loads(data: bytes | str) -> Any:
    """``json.loads(data)`` for UTF-8 (or str) data; raises ValueError when it is not JSON."""
    if isinstance(data, bytes):
        if _scan is None or data[:3] == b"\xef\xbb\xbf" or b"\x00" in data[:4]:
            import json  # a BOM or UTF-16/32: json.loads detects the encoding

            return json.loads(data)
        data = data.decode("utf-8", "surrogatepass")  # as json.loads decodes UTF-8
    if _scan is None:
        import json

        return json.loads(data)
    start = len(data) - len(data.lstrip(_WHITESPACE))
    try:
        value, end = _scan(data, start)
    except StopIteration:
        raise ValueError(f"Expecting value at {start}") from None
    if data[end:].strip(_WHITESPACE):
        raise ValueError(f"Extra data at {end}")
    return value


def _not_serializable(value: object) -> Any:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def dumps(value: Any, compact: bool = False) -> str:
    """``json.dumps(value, ensure_ascii=False)``; ``compact``: with ``separators=(",", ":")``."""
    if _json is None:
        import json

        separators = (",", ":") if compact else None
        return json.dumps(value, ensure_ascii=False, separators=separators)
    item, key = (",", ":") if compact else (", ", ": ")
    encode = _json.make_encoder(
        {}, _not_serializable, _json.encode_basestring, None, key, item, False, False, True
    )
    return "".join(encode(value, 0))


class _NotPlain(Exception):
    """A value the indenting encoder leaves to ``json`` (a non-string key, another type)."""


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (_INFINITY, -_INFINITY):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _indented(value: Any, level: int) -> str:
    """``json.dumps(value, ensure_ascii=False, indent=2)`` of plain JSON data, at ``level``."""
    if isinstance(value, str):
        return _json.encode_basestring(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotPlain
            items.append(_json.encode_basestring(key) + ": " + _indented(item, level + 1))
        opening, closing = "{", "}"
    elif isinstance(value, list | tuple):
        if not value:
            return "[]"
        items = [_indented(item, level + 1) for item in value]
        opening, closing = "[", "]"
    else:
        raise _NotPlain
    inner = "\n" + "  " * (level + 1)
    return opening + inner + ("," + inner).join(items) + "\n" + "  " * level + closing


def dumps_indented(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, indent=2)``."""
    if _json is not None:
        try:
            return _indented(value, 0)
        except (_NotPlain, RecursionError):
            pass  # json says what is wrong (or converts the keys)
    import json

    return json.dumps(value, ensure_ascii=False, indent=2)


# Runs, so a long run costs one call.
_JSON_UNSAFE = "[\x7f-\x9f\u2028\u2029\ud800-\udfff]+"
# The same characters in UTF-8, bar the lone surrogates (which UTF-8 cannot carry).
_JSON_UNSAFE_UTF8 = rb"(?:\x7f|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9])+"


class _EscapeTable(dict[int, str]):
    """``code -> "\\uXXXX"`` for str.translate, filled as codes are met (the 2,000 surrogates
    are not worth building at import: the one-shot CLI imports this)."""

    def __missing__(self, code: int) -> str:
        self[code] = escaped = f"\\u{code:04x}"
        return escaped


_JSON_ESCAPES = _EscapeTable()


def _json_escape(match: re.Match[str]) -> str:
    return match.group().translate(_JSON_ESCAPES)


def json_text(value: Any, indent: int | None = None) -> str:
    """``value`` as JSON text with no raw control character in it (see the module docstring).
    ``indent``: None or 2 (as ``json.dumps`` gives them)."""
    if indent is None:
        text = dumps(value)
    elif indent == 2:
        text = dumps_indented(value)
    else:
        import json

        text = json.dumps(value, ensure_ascii=False, indent=indent)
    return escape_controls(text)


def escape_controls(text: str) -> str:
    """JSON text ``text`` (as ``json.dumps(..., ensure_ascii=False)`` writes it) with every
    control character in it escaped as ``json_text`` escapes them: for JSON built another way
    (in pieces, or compact) that may reach a terminal."""
    if text.isascii() and "\x7f" not in text:
        return text  # nothing to escape: the common case, and no need of re
    import re

    # The characters escaped here occur only inside JSON strings (the syntax is ASCII), where
    # ``\\uXXXX`` means the same character.
    return re.sub(_JSON_UNSAFE, _json_escape, text)


def escape_controls_utf8(data: bytes) -> bytes:
    """``escape_controls`` for JSON text encoded as UTF-8 (a reply's pieces, built as bytes).
    Text with none of those characters, however much of it is not ASCII, costs three scans of
    its bytes for their lead bytes: a regular expression over a reply's non-ASCII text cost
    half as much again as writing it."""
    if b"\xc2" not in data and b"\xe2\x80" not in data and b"\x7f" not in data:
        return data
    import re

    return re.sub(_JSON_UNSAFE_UTF8, _utf8_escape, data)


def _utf8_escape(match: re.Match[bytes]) -> bytes:
    return match.group().decode().translate(_JSON_ESCAPES).encode()
