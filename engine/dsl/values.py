"""What a query's fields and operators mean: the keys of structured text, and how values compare.

Shared by the executor and the tests' naive reference, so that both mean the same by a field;
what the reference checks is the executor's shortcuts (block scans, merging, early stops, bounded
sorts and groups), not this module's rules.

- ``structured_fields``: a JSON object (the line or payload starts with ``{``), else the
  ``key=value`` pairs of logfmt (values bare or double-quoted with backslash escapes). JSON is
  parsed with orjson (3-4x the standard module: the cost of a field filter is mostly this); what
  it refuses and the standard module takes (NaN, huge integers) goes to the latter.
- ``lookup``: a key as written first (``"a.b"``), else a path into nested objects.
- Comparisons: a number against a number, or a number-like string, compares as numbers; two
  strings compare as strings; ``true``/``false`` match booleans (and the strings true/false),
  ``null`` a JSON null. A field that is missing matches no predicate; ``NOT`` negates the whole
  predicate (so ``NOT level = "x"`` matches a line without ``level``).
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from typing import Any

import orjson

from .syntax import Compare, Exists, Expr, In, Not, Or, Text

MISSING: Any = object()  # a field the row does not have
MAX_STRUCTURED_CHARS = 64 << 10  # longer text is not parsed for fields (the store caps lines too)


def structured_fields(text: str) -> dict[str, Any]:
    """The keys of ``text``: a JSON object's, else logfmt pairs (``{}`` when it has neither)."""
    if len(text) > MAX_STRUCTURED_CHARS:
        return {}
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            value = orjson.loads(stripped)
        except orjson.JSONDecodeError:  # NaN, Infinity, integers past 64 bits: the standard one
            try:
                value = json.loads(stripped)
            except (ValueError, RecursionError):
                value = None
        if isinstance(value, dict):
            return value
    return logfmt_fields(text) if "=" in text else {}


def raw_fields(raw: bytes, text: Callable[[], str]) -> dict[str, Any]:
    """``structured_fields`` of a line given as its bytes: a JSON object parsed from the bytes
    at once (no decoding first), anything else (or bytes that are not UTF-8) from ``text()``."""
    if raw[:1] == b"{" and len(raw) <= MAX_STRUCTURED_CHARS:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    return structured_fields(text())


def logfmt_fields(text: str) -> dict[str, Any]:
    """``key=value`` pairs separated by spaces; a value may be double-quoted (``\\"`` escapes)."""
    out: dict[str, Any] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        start = i
        while i < n and text[i] not in " =":
            i += 1
        key = text[start:i]
        if i < n and text[i] == "=" and key and '"' not in key:
            i += 1
            if i < n and text[i] == '"':
                i += 1
                parts: list[str] = []
                while i < n and text[i] != '"':
                    if text[i] == "\\" and i + 1 < n:
                        i += 1
                    parts.append(text[i])
                    i += 1
                i += 1
                out[key] = "".join(parts)
            else:
                start = i
                while i < n and text[i] != " ":
                    i += 1
                out[key] = text[start:i]
        else:
            while i < n and text[i] != " ":
                i += 1
    return out


def lookup(fields: dict[str, Any], name: str) -> Any:
    """The value of ``name`` in ``fields``: the key as written, else a path of nested keys."""
    value = fields.get(name, MISSING)
    if value is not MISSING or "." not in name:
        return value
    current: Any = fields
    for part in name.split("."):
        if not isinstance(current, dict):
            return MISSING
        current = current.get(part, MISSING)
        if current is MISSING:
            return MISSING
    return current


def as_number(value: Any) -> float | int | None:
    """A number, or a number-like string as one (None: neither; booleans are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, str) and value and len(value) < 64:
        try:
            return int(value)
        except ValueError:
            pass
        try:
            number = float(value)
        except ValueError:
            return None
        return None if math.isnan(number) else number
    return None


def as_text(value: Any) -> str:
    """A value as the text operators see it: strings as they are, other values as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _equal(value: Any, literal: Any) -> bool:
    if isinstance(literal, bool):
        if isinstance(value, bool):
            return value is literal
        return isinstance(value, str) and value.lower() == ("true" if literal else "false")
    if literal is None:
        return value is None
    if isinstance(literal, (int, float)):
        number = as_number(value)
        return number is not None and number == literal
    text = str(literal)  # a string literal
    if isinstance(value, str):
        return value == text
    if isinstance(value, bool):
        return text.lower() == ("true" if value else "false")
    if isinstance(value, (int, float)):
        number = as_number(literal)
        return number is not None and number == value
    return False


def _ordered(value: Any, op: str, literal: Any) -> bool:
    if isinstance(literal, bool) or literal is None:
        return False
    if isinstance(literal, str) and isinstance(value, str):
        left: Any = value
        right: Any = literal
    else:
        left, right = as_number(value), as_number(literal)
        if left is None or right is None:
            return False
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    return bool(left <= right)


def compare(value: Any, op: str, literal: Any) -> bool:
    """``value op literal`` by the rules of the module docstring (``value`` not MISSING)."""
    if op == "=":
        return _equal(value, literal)
    if op == "!=":
        return not _equal(value, literal)
    return _ordered(value, op, literal)


Getter = Callable[[str], Any]  # a row's field by name (MISSING when it has none)
_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
Predicate = Callable[[Getter], bool]


def compile_expr(expr: Expr) -> Predicate:
    """``expr`` as a function of a row's getter."""
    if isinstance(expr, Compare):
        name, op, literal = expr.field, expr.op, expr.value
        if isinstance(literal, int | float) and not isinstance(literal, bool):
            # The common case first: a number against a number (the rules give the same).
            apply = _OPERATORS[op]

            def numeric(get: Getter) -> bool:
                value = get(name)
                kind = type(value)
                if kind is int or kind is float:
                    return bool(apply(value, literal))
                return value is not MISSING and compare(value, op, literal)

            return numeric

        def comparison(get: Getter) -> bool:
            value = get(name)
            return value is not MISSING and compare(value, op, literal)

        return comparison
    if isinstance(expr, Text):
        name, needle, pattern = expr.field, expr.value, expr.pattern
        if pattern is not None:
            search = pattern

            def matches(get: Getter) -> bool:
                value = get(name)
                return value is not MISSING and bool(search(as_text(value)))

            return matches
        if expr.op == "contains":

            def contains(get: Getter) -> bool:
                value = get(name)
                return value is not MISSING and needle in as_text(value)

            return contains

        def startswith(get: Getter) -> bool:
            value = get(name)
            return value is not MISSING and as_text(value).startswith(needle)

        return startswith
    if isinstance(expr, In):
        name, values = expr.field, expr.values

        def within(get: Getter) -> bool:
            value = get(name)
            return value is not MISSING and any(_equal(value, v) for v in values)

        return within
    if isinstance(expr, Exists):
        name = expr.field
        return lambda get: get(name) is not MISSING
    if isinstance(expr, Not):
        inner = compile_expr(expr.operand)
        return lambda get: not inner(get)
    parts = [compile_expr(operand) for operand in expr.operands]
    if isinstance(expr, Or):
        return lambda get: any(part(get) for part in parts)
    return lambda get: all(part(get) for part in parts)


def group_key(value: Any) -> tuple[str, Any]:
    """What GROUP BY groups a value under: numbers by value (1 and 1.0 together, booleans
    apart), anything else by its text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ("n", value)
    return ("v", as_text(value))


def sort_key(value: Any) -> tuple[int, Any]:
    """An order over every value: missing and null first, then numbers (number-like strings
    too), then other strings, then anything else by its JSON text."""
    if value is MISSING or value is None:
        return (0, 0)
    number = as_number(value)
    if number is not None:
        return (1, number)
    if isinstance(value, str):
        return (2, value)
    return (3, as_text(value))
