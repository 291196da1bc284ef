"""The one exception tree of lacrimosa.

    LacrimosaError                 base; ``code`` is the protocol's error code, ``exit_code`` the CLI's
    ├── ConfigError                a config file is malformed or invalid (file, line, reason)
    ├── NoSuchProcess              a request named a process that is not configured
    ├── InvalidRequest             a control request is malformed (bad JSON, unknown op, bad argument)
    │   └── QuerySyntaxError       a query that does not parse (position, what was expected)
    ├── NoConsole                  no console is running for this project (CLI side)
    ├── TimedOut                   the console did not answer within the deadline (stopped, overloaded)
    ├── Unavailable                the console runs but cannot answer now: try again
    │   ├── Busy                   every connection slot is taken, or the socket's queue is full
    │   └── Starting               the console is still starting (journal recovery, processes)
    ├── ConsoleError               the console could not carry out an action
    ├── Cancelled                  a query was cancelled by its reader (the TUI's Escape)
    ├── NoSuchKey                  an API key id that is not (or no longer) there
    ├── KeyStoreError              the API key file cannot be trusted or read
    └── JournalError               an event journal file cannot be used (not ours, truncated, …)

The API maps ``code`` to a JSON error (and later an HTTP status); the CLI maps ``exit_code`` to its
exit status: 1 failed, 2 usage, 3 no such process, 4 no console running (or the connection was
lost: closed or reset), 5 timed out (the console is there but did not answer in time), 6 the
console is busy or still starting (try again).
"""

from __future__ import annotations

TYPE_CHECKING = (
    False  # typing.TYPE_CHECKING without importing typing: the one-shot CLI imports this
)
if TYPE_CHECKING:
    from pathlib import Path


class LacrimosaError(Exception):
    code = "failed"
    exit_code = 1

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(LacrimosaError):
    """A config file could not be used. Carries where (file, line) and why."""

    code = "config"
    exit_code = 1

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        from pathlib import Path  # not at the top: the one-shot CLI never raises this

        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line else str(self.path)
        super().__init__(f"{where}: {reason}")


class NoSuchProcess(LacrimosaError):
    code = "no_such_process"
    exit_code = 3

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        hint = f" (known: {', '.join(known)})" if known else ""
        super().__init__(f"no such process: {name!r}{hint}")


class InvalidRequest(LacrimosaError):
    code = "invalid_request"
    exit_code = 2


class QuerySyntaxError(InvalidRequest):
    """A query (or a WHERE expression) that does not parse: ``position`` is the 0-based offset
    into ``query`` of what was wrong, ``expected`` what would have been right there."""

    code = "query_syntax"
    exit_code = 2

    def __init__(self, reason: str, query: str, position: int, expected: str = "") -> None:
        self.reason = reason
        self.query = query
        self.position = max(0, min(position, len(query)))
        self.expected = expected
        super().__init__(f"{reason} (at column {self.position + 1})")


class NoConsole(LacrimosaError):
    code = "no_console"
    exit_code = 4


class TimedOut(LacrimosaError):
    """No reply within the deadline: the console is alive (its socket is open) but stopped
    (SIGSTOP), overloaded or stuck. Not "lost": a closed or reset connection is NoConsole."""

    code = "timeout"
    exit_code = 5


class Unavailable(LacrimosaError):
    """The console is there but cannot take this request now; the same request may work later."""

    code = "unavailable"
    exit_code = 6


class Busy(Unavailable):
    code = "busy"


class Starting(Unavailable):
    code = "starting"


class ConsoleError(LacrimosaError):
    code = "failed"
    exit_code = 1


class Cancelled(LacrimosaError):
    code = "cancelled"
    exit_code = 1


class NoSuchKey(LacrimosaError):
    code = "no_such_key"
    exit_code = 1


class KeyStoreError(LacrimosaError):
    """The API key file cannot be trusted or read (not ours, open to others, malformed)."""

    code = "failed"
    exit_code = 1


class JournalError(LacrimosaError):
    """A journal file cannot be used: not a journal, truncated, another version, in use."""

    code = "journal"
    exit_code = 1


_EXIT_CODES = {
    cls.code: cls.exit_code
    for cls in (
        ConfigError,
        NoSuchProcess,
        InvalidRequest,
        QuerySyntaxError,
        NoConsole,
        TimedOut,
        Unavailable,
        Busy,
        Starting,
        ConsoleError,
        NoSuchKey,
        JournalError,
    )
}


def exit_code_for(code: str) -> int:
    """The CLI exit status for a protocol error code (1 for codes not listed here)."""
    return _EXIT_CODES.get(code, 1)
