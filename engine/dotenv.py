"""Reading ``.env`` files (``KEY=value`` lines) as honcho and foreman read them, with errors that
say file, line and reason.

One assignment a line:

- blank lines and lines starting with ``#`` are skipped; a leading ``export`` is allowed (so the
  same file can be ``source``-d by a shell); a byte-order mark at the start is ignored;
- ``NAME=value`` with ``NAME`` made of letters, digits and ``_`` (not starting with a digit);
  spaces around ``=`` are allowed;
- ``'single quoted'``: taken as written; ``"double quoted"``: ``\\n``, ``\\t``, ``\\"`` and
  ``\\\\`` are read as a newline, a tab, a quote and a backslash (any other backslash stays);
- unquoted: taken as written up to a `` #`` comment (a ``#`` after a space), outer spaces
  removed; an empty value is an empty string;
- nothing is expanded (``$HOME`` stays ``$HOME``), as in honcho and foreman.

Where honcho differs (its lines go through ``shlex``): it ignores ``export`` lines and empty
values, drops the spaces inside an unquoted value (``A=a b`` is ``ab``) and starts a comment at
any ``#`` (``A=x#y`` is ``x``); lacrimosa keeps them, as foreman and python-dotenv do. Quoted
values, comments after a space and ``\\n`` in double quotes read the same in both (tests run
the same files through honcho and compare).

A line that is none of these (no ``=``, a bad name, an unterminated quote, text after a closing
quote) is a :class:`ConfigError` carrying the file and line; so is a file too large or unreadable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

MAX_ENV_FILE_BYTES = 1 << 20  # a .env larger than this is refused (it is not a data file)
_ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_DOUBLE_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


@dataclass(frozen=True)
class EnvValue:
    """One variable read from a file: its value and where it was set (``file:line``)."""

    value: str
    source: str


def read_env_file(path: Path) -> dict[str, EnvValue]:
    """The variables ``path`` sets, in file order (a name set twice keeps its last value)."""
    try:
        size = path.stat().st_size
        if size > MAX_ENV_FILE_BYTES:
            raise ConfigError(
                path, None, f"too large for an env file ({size} bytes; at most 1 MiB)"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "env file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"cannot read env file: {exc}") from None
    return parse_env(text, path)


def parse_env(text: str, path: Path) -> dict[str, EnvValue]:
    """The variables of ``text``, the contents of the file ``path`` (named in errors)."""
    values: dict[str, EnvValue] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.match(line)
        if match is None:
            raise ConfigError(path, number, "expected NAME=value (a name of letters, digits, _)")
        name, rest = match.group(1), match.group(2)
        try:
            value = _value(rest)
        except ValueError as exc:
            raise ConfigError(path, number, f"{name}: {exc}") from None
        if "\0" in value:
            raise ConfigError(path, number, f"{name}: a value must not contain a NUL")
        values[name] = EnvValue(value, f"{path}:{number}")
    return values


def _value(rest: str) -> str:
    """The value written after ``NAME=`` (quotes, escapes and a trailing comment handled)."""
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        end, value = _quoted(rest, quote)
        tail = rest[end + 1 :].strip()
        if tail and not tail.startswith("#"):
            raise ValueError(f"unexpected text after the closing quote: {tail[:40]!r}")
        return value
    comment = re.search(r"\s#", rest)
    return (rest[: comment.start()] if comment else rest).strip()


def _quoted(rest: str, quote: str) -> tuple[int, str]:
    """The position of the closing ``quote`` of ``rest`` (which opens with it) and the text
    between, with double quotes' escapes read."""
    out: list[str] = []
    position = 1
    while position < len(rest):
        char = rest[position]
        if char == quote:
            return position, "".join(out)
        if char == "\\" and quote == '"' and position + 1 < len(rest):
            following = rest[position + 1]
            if following in _DOUBLE_ESCAPES:
                out.append(_DOUBLE_ESCAPES[following])
                position += 2
                continue
        out.append(char)
        position += 1
    raise ValueError(f"no closing {quote} (a value is one line)")
