"""Loading ``lacrimosa.toml`` and ``Procfile``: every mistake reported with file, line and reason.

A config is checked whole before anything starts; the first problem found is raised as a
:class:`ConfigError`, so a bad config never half-starts a project. Whatever the file holds,
:func:`load_config` returns a :class:`Config` or raises :class:`ConfigError`, never another
exception (a test mutates valid configs at random to hold it to that): integers too long for
Python to read (over ``sys.get_int_max_str_digits()`` digits) or nested too deeply for the parser,
sizes beyond the bounds below, and ``cwd``/``journal`` paths the OS refuses (too long, a symlink
loop, a file where a folder should be) are all reported with the file, the line and the key.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .formation import ALL, DEFAULT_BASE_PORT, MAX_INSTANCES, ProjectOptions, expand
from .humanize import parse_duration
from .processes.probes import (
    DEFAULT_HEALTH_INTERVAL,
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    HEALTH_KINDS,
    READY_KINDS,
    ProbeSpec,
)

RESTART_POLICIES = ("never", "on-failure", "always")
# What a process waits for of each process it depends on: that it has started, that its ready
# probe passed (started, with no probe), that it exited with status 0.
DEPENDENCY_CONDITIONS = ("started", "ready", "completed")
MAX_PROBE_SECONDS = 3600.0  # a probe's interval and timeout
MAX_HEALTH_FAILURES = 1000
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SIZE_PATTERN = re.compile(r"^\s*([0-9]+)(?:\.([0-9]+))?\s*([KMG]i?B?|B)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
DEFAULT_LOG_BUDGET = 256 << 20
DEFAULT_JOURNAL_CAPACITY = 1 << 20  # slots (32 MiB)
DEFAULT_JOURNAL_BLOB = 128 << 20
MIN_JOURNAL_CAPACITY = 64
MIN_JOURNAL_BLOB = 1 << 20
DEFAULT_RCVBUF = 64 << 20
RECEIVE_BACKENDS = ("auto", "recvmmsg", "recv_into", "io_uring")
MIN_LOG_BUDGET = 8 << 20
MAX_LOG_BUDGET = 1 << 40
MAX_SIZE = 1 << 62  # no size above this is read at all (every size has a lower bound of its own)


@dataclass(frozen=True)
class ProcessSpec:
    """One declared process."""

    name: str
    cmd: str
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    restart: str = "on-failure"
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    stable_after: float = 10.0
    autostart: bool = True
    pty: bool = False  # stdout on a pseudo-terminal (stderr stays a pipe)
    # Set by formation.expand: the type this is an instance of, which one, and of how many.
    process_type: str = ""  # "" for a spec made by hand: its own name
    instance: int = 1
    instances: int = 1  # declared (``instances = N``), then as expanded
    port: int | None = None  # ``port = N``: this type's first PORT
    env_file: tuple[Path, ...] = ()  # ``env_file``: read over the project's env files
    # The environment below ``env``: env files, PORT and PS (formation.expand fills it in).
    base_env: dict[str, str] = field(default_factory=dict)
    env_sources: dict[str, str] = field(default_factory=dict)  # variable → where it was set
    # ``depends_on``: declared type → condition (DEPENDENCY_CONDITIONS); a type means every
    # instance of it. Checked at load: every name declared, no cycle.
    depends_on: dict[str, str] = field(default_factory=dict)
    ready: ProbeSpec | None = None  # None: ready as soon as it has started
    health: ProbeSpec | None = None

    def __post_init__(self) -> None:
        if not self.process_type:
            object.__setattr__(self, "process_type", self.name)

    @property
    def instance_name(self) -> str:
        """``web.1``: in ``PS`` and ``LACRIMOSA_PROCESS``, even when ``ps`` shows ``web``."""
        return f"{self.process_type}.{self.instance}"

    def environment(self) -> dict[str, str]:
        """What this process adds to the console's environment (later layers win: see
        formation.py): env files, PORT and PS, then the ``env`` table."""
        return {**self.base_env, **self.env}


@dataclass(frozen=True)
class SequencerSettings:
    """``[sequencer]``: where events arrive and where they are journaled."""

    udp: str | None = None  # "HOST:PORT"; no sequencer without it
    journal: Path | None = None  # None: events.journal in the console's state folder
    capacity: int = DEFAULT_JOURNAL_CAPACITY  # slots in the journal's index ring
    blob_size: int = DEFAULT_JOURNAL_BLOB  # bytes for the events' payloads
    backend: str = "auto"  # auto | recvmmsg | recv_into | io_uring
    rcvbuf: int = DEFAULT_RCVBUF  # the kernel receive buffer asked for


@dataclass(frozen=True)
class Config:
    path: Path
    processes: dict[str, ProcessSpec]
    log_budget_bytes: int = DEFAULT_LOG_BUDGET
    max_line_bytes: int = 64 << 10
    sequencer: SequencerSettings = field(default_factory=lambda: SequencerSettings())
    http: str | None = None  # [http] bind: "HOST:PORT" of the HTTP API; None: no HTTP API
    # [http] metrics_public: /metrics answers without a key (a scraper on a trusted network).
    http_metrics_public: bool = False
    # Problems that did not stop the config from loading (Procfile lines skipped), each
    # "file:line: what"; shown by ps, the TUI and a headless console.
    warnings: tuple[str, ...] = ()
    base_port: int = DEFAULT_BASE_PORT  # PORT of the first type's first instance

    @property
    def udp(self) -> str | None:
        return self.sequencer.udp

    @property
    def root(self) -> Path:
        return self.path.parent


def load_config(path: Path, options: ProjectOptions | None = None) -> Config:
    """Load a ``lacrimosa.toml`` or a ``Procfile`` (chosen by file name), with the ``.env``
    beside it, and expand it into the processes to run (``options``: what ``up`` adds).

    Returns a :class:`Config` or raises :class:`ConfigError` (file, line, reason); nothing else
    (InvalidRequest for a bad ``options``).
    """
    declared = _load_declared(path)
    return expand(declared, options or ProjectOptions())


def _load_declared(path: Path) -> Config:
    """The config as written: one spec per declared process type."""
    try:
        path = Path(path).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop
        raise ConfigError(path, None, f"cannot read: {_os_reason(exc)}") from None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from None
    if path.suffix == ".toml":
        return _load_toml(path, text)
    return _load_procfile(path, text)


# -- Procfile ------------------------------------------------------------------------------------

_PROCFILE_LINE = re.compile(r"^([^:\s]+)\s*:\s*(.*)$")
MAX_CONFIG_WARNINGS = 20  # listed one by one; past this, one more line says how many more


def _load_procfile(path: Path, text: str) -> Config:
    """``name: command`` lines. Any other line (prose, a byte-order mark, a YAML-style ``-``,
    a bad name, no command) is skipped with a warning carrying file:line, as honcho skips it;
    a name declared twice is still an error."""
    processes: dict[str, ProcessSpec] = {}
    skipped: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PROCFILE_LINE.match(line)
        name, cmd = (match.group(1), match.group(2).strip()) if match else ("", "")
        if line.startswith("\ufeff"):
            reason = "it starts with a byte-order mark (save the file as UTF-8 without BOM)"
        elif not match:
            reason = "expected 'name: command'"
        elif not NAME_PATTERN.match(name) or name == ALL:
            reason = f"bad process name {_show(name)} ({_NAME_RULE})"
        elif not cmd:
            reason = f"process {name!r} has an empty command"
        elif name in processes:
            raise ConfigError(path, number, f"process {name!r} is declared twice")
        else:
            processes[name] = ProcessSpec(name=name, cmd=cmd, cwd=path.parent)
            continue
        skipped.append(f"{path}:{number}: line skipped: {reason}")
    if not processes:
        raise ConfigError(path, None, "declares no processes")
    warnings = skipped[:MAX_CONFIG_WARNINGS]
    if len(skipped) > MAX_CONFIG_WARNINGS:
        warnings.append(f"{path}: {len(skipped) - MAX_CONFIG_WARNINGS} more lines skipped")
    return Config(path=path, processes=processes, warnings=tuple(warnings))


# -- lacrimosa.toml ------------------------------------------------------------------------------

_TOP_LEVEL_KEYS = {"processes", "logs", "sequencer", "http"}
_PROCESS_KEYS = {
    "cmd",
    "cwd",
    "env",
    "restart",
    "stop_signal",
    "stop_timeout",
    "backoff_initial",
    "backoff_max",
    "stable_after",
    "autostart",
    "pty",
    "port",
    "instances",
    "env_file",
    "depends_on",
    "ready",
    "health",
}


class _TomlLocator:
    """Finds the line a table or key was written on, for error messages (tomllib keeps none)."""

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def find(self, table: str, key: str | None = None) -> int | None:
        wanted = f"{table}.{key}" if key else table
        current = ""
        for number, line in enumerate(self.lines, start=1):
            header = self._HEADER.match(line)
            if header:
                current = _normalise_key(header.group(1))
                if current == wanted or current.startswith(wanted + "."):
                    return number
                continue
            match = self._KEY.match(line)
            if match:
                full = _normalise_key(f"{current}.{match.group(1)}" if current else match.group(1))
                if full == wanted or full.startswith(wanted + "."):
                    return number
        return None


def _first_line(text: str, pattern: re.Pattern[str]) -> int | None:
    """The number of the first line ``pattern`` matches in, if any."""
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line):
            return number
    return None


def _most_nested_line(text: str) -> int | None:
    """The line that opens the most arrays and inline tables (where deep nesting starts)."""
    best, best_count = None, 0
    for number, line in enumerate(text.splitlines(), start=1):
        count = line.count("[") + line.count("{")
        if count > best_count:
            best, best_count = number, count
    return best


def _show(value: object, limit: int = 60) -> str:
    """``repr(value)`` for an error message, short whatever the value (even a 5,000-digit int,
    whose repr Python refuses)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def _os_reason(exc: BaseException) -> str:
    """Why the OS refused a path, without echoing the (maybe huge) path itself."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)[:200]


def _check_path(path: Path) -> None:
    """Raise OSError (or RuntimeError, ValueError) if the OS could never use ``path``: a name
    or the whole path too long, a symlink loop, a file where a folder should be, a NUL. A path
    that does not exist yet is fine."""
    if "\0" in str(path):
        raise ValueError("contains a NUL character")
    resolved = path.resolve()
    existing = resolved
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    os.stat(existing)  # ENOTDIR, ELOOP, EACCES, ENAMETOOLONG
    if existing != resolved and not os.path.isdir(existing):  # a file where a folder should be
        raise NotADirectoryError(20, os.strerror(20))
    name_max = os.pathconf(existing, "PC_NAME_MAX")
    path_max = os.pathconf(existing, "PC_PATH_MAX")
    encoded = os.fsencode(resolved)
    if len(encoded) >= path_max or any(len(part) > name_max for part in encoded.split(b"/")):
        raise OSError(36, os.strerror(36))  # ENAMETOOLONG, as open() would say


def _normalise_key(key: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in key.split("."))


def _load_toml(path: Path, text: str) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"at line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(path, line, f"invalid TOML: {reason}") from None
    except ValueError:  # tomllib passes on int()'s refusal of an over-long literal, unlocated
        limit = sys.get_int_max_str_digits()
        raise ConfigError(
            path,
            _first_line(text, re.compile(rf"[0-9](?:_?[0-9]){{{limit},}}")),
            f"invalid TOML: an integer with more than {limit} digits",
        ) from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(
            path,
            _most_nested_line(text),
            "invalid TOML: arrays or inline tables nested too deeply",
        ) from None
    locate = _TomlLocator(text).find

    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            raise ConfigError(
                path,
                locate(key),
                f"unknown section {key!r} (expected one of: {', '.join(sorted(_TOP_LEVEL_KEYS))})",
            )
    processes_table = data.get("processes")
    if not isinstance(processes_table, dict) or not processes_table:
        raise ConfigError(
            path,
            locate("processes"),
            "declares no processes (add a [processes.NAME] table with a cmd)",
        )
    processes = {}
    for name, table in processes_table.items():
        processes[name] = _process_spec(path, locate, name, table)
    _check_dependencies(path, locate, processes)

    logs = _table(path, locate, data, "logs", {"budget", "max_line"})
    budget = _size(path, locate, logs, "logs", "budget", DEFAULT_LOG_BUDGET)
    if not MIN_LOG_BUDGET <= budget <= MAX_LOG_BUDGET:
        raise ConfigError(
            path,
            locate("logs", "budget"),
            f"logs.budget must be at least {MIN_LOG_BUDGET >> 20}MiB and at most 1TiB",
        )
    max_line = _size(path, locate, logs, "logs", "max_line", 64 << 10)
    if not 256 <= max_line <= 512 << 10:
        raise ConfigError(
            path, locate("logs", "max_line"), "logs.max_line must be between 256B and 512KiB"
        )
    http = _table(path, locate, data, "http", {"bind", "metrics_public"})
    bind = _address(path, locate, http, "http", "bind")
    metrics_public = http.get("metrics_public", False)
    if not isinstance(metrics_public, bool):
        raise ConfigError(
            path, locate("http", "metrics_public"), "http.metrics_public: expected true or false"
        )
    return Config(
        path=path,
        processes=processes,
        log_budget_bytes=budget,
        max_line_bytes=max_line,
        sequencer=_sequencer_settings(path, locate, data),
        http=bind,
        http_metrics_public=metrics_public,
    )


def _sequencer_settings(path: Path, locate: Any, data: dict[str, Any]) -> SequencerSettings:
    keys = {"udp", "journal", "capacity", "blob", "backend", "rcvbuf"}
    table = _table(path, locate, data, "sequencer", keys)

    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(path, locate("sequencer", key), f"sequencer.{key}: {reason}")

    journal = table.get("journal")
    if journal is not None and (not isinstance(journal, str) or not journal):
        raise fail("journal", "expected a file path")
    journal_path = (path.parent / journal) if journal else None
    if journal_path is not None:
        try:
            _check_path(journal_path)
        except (OSError, RuntimeError, ValueError) as exc:
            raise fail("journal", f"cannot use this path: {_os_reason(exc)}") from None
        if journal_path.is_dir():
            raise fail("journal", "is a folder; expected a file path")
    capacity = table.get("capacity", DEFAULT_JOURNAL_CAPACITY)
    if (
        isinstance(capacity, bool)
        or not isinstance(capacity, int)
        or not MIN_JOURNAL_CAPACITY <= capacity <= 1 << 28
    ):
        raise fail(
            "capacity", f"expected a number of slots from {MIN_JOURNAL_CAPACITY} to 268435456"
        )
    blob = _size(path, locate, table, "sequencer", "blob", DEFAULT_JOURNAL_BLOB)
    if not MIN_JOURNAL_BLOB <= blob <= 1 << 40:
        raise fail("blob", f"must be between {MIN_JOURNAL_BLOB >> 20}MiB and 1TiB")
    backend = table.get("backend", "auto")
    if backend not in RECEIVE_BACKENDS:
        raise fail("backend", f"expected one of: {', '.join(RECEIVE_BACKENDS)}")
    rcvbuf = _size(path, locate, table, "sequencer", "rcvbuf", DEFAULT_RCVBUF)
    if not 4096 <= rcvbuf <= 1 << 31:
        raise fail("rcvbuf", "must be between 4KiB and 2GiB")
    return SequencerSettings(
        udp=_address(path, locate, table, "sequencer", "udp"),
        journal=journal_path,
        capacity=capacity,
        blob_size=blob,
        backend=backend,
        rcvbuf=rcvbuf,
    )


def _process_spec(path: Path, locate: Any, name: str, table: Any) -> ProcessSpec:
    where = f"processes.{name}"
    line = locate(where)
    _check_name(path, line, name)
    if not isinstance(table, dict):
        raise ConfigError(path, line, f"{where} must be a table with at least a cmd")
    for key in table:
        if key not in _PROCESS_KEYS:
            raise ConfigError(
                path,
                locate(where, key),
                f"unknown key {key!r} in [{where}] "
                f"(expected one of: {', '.join(sorted(_PROCESS_KEYS))})",
            )

    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(path, locate(where, key) or line, f"{where}.{key}: {reason}")

    cmd = table.get("cmd")
    if cmd is None:
        raise ConfigError(path, line, f"[{where}] has no cmd")
    if not isinstance(cmd, str) or not cmd.strip():
        raise fail("cmd", "must be a non-empty string")
    if "\0" in cmd:  # exec refuses it: the process could never start
        raise fail("cmd", "must not contain a NUL character")
    cwd_value = table.get("cwd", ".")
    if not isinstance(cwd_value, str) or "\0" in cwd_value:
        raise fail("cwd", "must be a string (a folder, relative to the config file)")
    try:
        cwd = (path.parent / cwd_value).resolve()
        is_dir = cwd.is_dir()
    except (OSError, RuntimeError) as exc:  # too long, a symlink loop (RuntimeError), ...
        raise fail("cwd", f"cannot use {_show(cwd_value)}: {_os_reason(exc)}") from None
    if not is_dir:
        raise fail("cwd", f"folder does not exist: {_show(str(cwd), 200)}")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(v, (str, int, float, bool)) for v in env.values()
    ):
        raise fail("env", 'must be a table of NAME = "value"')
    env_values = {}
    for env_name, env_value in env.items():
        try:
            env_values[env_name] = _env_value(env_value)
        except ValueError:  # str() of an int too long to write out (a huge hex literal)
            raise fail("env", f"{_show(env_name)}: the number is too large") from None
        # What exec cannot pass on would only fail later, when the process is started.
        if not env_name or "=" in env_name or "\0" in env_name or "\0" in env_values[env_name]:
            raise fail(
                "env",
                f"{_show(env_name)}: a name must be non-empty without '=' or NUL, "
                "a value without NUL",
            )
    restart = table.get("restart", "on-failure")
    if restart not in RESTART_POLICIES:
        raise fail("restart", f"must be one of {', '.join(RESTART_POLICIES)}, not {_show(restart)}")
    stop_signal = _signal(table.get("stop_signal", "SIGTERM"))
    if stop_signal is None:
        raise fail("stop_signal", f"unknown signal {_show(table.get('stop_signal'))}")
    numbers = {}
    for key, default in (
        ("stop_timeout", 5.0),
        ("backoff_initial", 0.5),
        ("backoff_max", 30.0),
        ("stable_after", 10.0),
    ):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
            raise fail(key, "must be a number of seconds, above 0 and at most 3600")
        numbers[key] = float(value)
    switches: dict[str, bool] = {}
    for key, default in (("autostart", True), ("pty", False)):
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise fail(key, "must be true or false")
        switches[key] = value
    port = table.get("port")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
    ):
        raise fail("port", "must be a port number from 1 to 65535")
    instances = table.get("instances", 1)
    if (
        isinstance(instances, bool)
        or not isinstance(instances, int)
        or not 1 <= instances <= MAX_INSTANCES
    ):
        raise fail("instances", f"must be a number from 1 to {MAX_INSTANCES}")
    env_file = table.get("env_file", [])
    env_files = [env_file] if isinstance(env_file, str) else env_file
    if not isinstance(env_files, list) or not all(
        isinstance(f, str) and f and "\0" not in f for f in env_files
    ):
        raise fail("env_file", "must be a file path or a list of them (relative to this file)")
    env_file_paths = []
    for env_file_name in env_files:
        try:
            env_path = (path.parent / env_file_name).resolve()
            found = env_path.is_file()
        except (OSError, RuntimeError) as exc:  # too long, a symlink loop (RuntimeError), ...
            raise fail(
                "env_file", f"cannot use {_show(env_file_name)}: {_os_reason(exc)}"
            ) from None
        if not found:
            raise fail("env_file", f"no such file: {_show(str(env_path), 200)}")
        env_file_paths.append(env_path)
    env_line = locate(where, "env") or line
    depends_on = table.get("depends_on", {})
    if isinstance(depends_on, list) and all(isinstance(d, str) for d in depends_on):
        depends_on = dict.fromkeys(depends_on, "started")  # a list: each only started
    if not isinstance(depends_on, dict) or not all(
        condition in DEPENDENCY_CONDITIONS for condition in depends_on.values()
    ):
        raise fail(
            "depends_on",
            'expected a table of NAME = "started" | "ready" | "completed", e.g. { db = "ready" }',
        )
    if name in depends_on:
        raise fail("depends_on", f"{name!r} cannot depend on itself")
    return ProcessSpec(
        name=name,
        cmd=cmd,
        cwd=cwd,
        env=env_values,
        restart=restart,
        stop_signal=stop_signal,
        autostart=switches["autostart"],
        pty=switches["pty"],
        stop_timeout=numbers["stop_timeout"],
        backoff_initial=numbers["backoff_initial"],
        backoff_max=numbers["backoff_max"],
        stable_after=numbers["stable_after"],
        port=port,
        instances=instances,
        env_file=tuple(env_file_paths),
        env_sources={key: f"{path}:{env_line}" for key in env_values},
        depends_on=dict(depends_on),
        ready=_probe(table, "ready", READY_KINDS, DEFAULT_INTERVAL, fail),
        health=_probe(table, "health", HEALTH_KINDS, DEFAULT_HEALTH_INTERVAL, fail),
    )


def _probe(
    table: dict[str, Any],
    role: str,
    kinds: tuple[str, ...],
    default_interval: float,
    fail: Any,
) -> ProbeSpec | None:
    """A ``ready`` or ``health`` inline table: exactly one of ``kinds`` and its target, and
    ``interval``/``timeout`` (seconds, or a duration such as "500ms"), ``failures`` (health)."""
    value = table.get(role)
    if value is None:
        return None
    options = {"interval", "timeout"} | ({"failures"} if role == "health" else set())
    example = 'e.g. { tcp = "127.0.0.1:5432", interval = "1s" }'
    if not isinstance(value, dict):
        raise fail(role, f"expected a table, {example}")
    unknown = set(value) - set(kinds) - options
    given = [kind for kind in kinds if kind in value]
    if unknown:
        raise fail(
            role,
            f"unknown key {sorted(unknown)[0]!r} (expected one of: "
            f"{', '.join([*kinds, *sorted(options)])})",
        )
    if len(given) != 1:
        raise fail(role, f"expected exactly one of {', '.join(kinds)}, {example}")
    kind = given[0]
    target = value[kind]
    if not isinstance(target, str) or not target.strip() or "\0" in target:
        raise fail(role, f"{kind}: expected a non-empty string")
    if kind == "tcp":
        try:
            parse_address(target)
        except ValueError as exc:
            raise fail(role, f"tcp: {exc}") from None
    elif kind == "http" and not re.match(r"^https?://[^/\s]+", target):
        raise fail(
            role, f"http: expected a URL such as http://127.0.0.1:8000/health, not {_show(target)}"
        )
    elif kind == "log":
        try:
            re.compile(target.encode())
        except re.error as exc:
            raise fail(role, f"log: not a regular expression: {exc}") from None
    seconds = {}
    for key, default in (("interval", default_interval), ("timeout", DEFAULT_TIMEOUT)):
        seconds[key] = _seconds(value.get(key, default))
        if seconds[key] is None:
            raise fail(role, f'{key}: expected a duration above 0 and at most 1h, e.g. "2s"')
    failures = value.get("failures", 3)
    if (
        isinstance(failures, bool)
        or not isinstance(failures, int)
        or not 1 <= failures <= MAX_HEALTH_FAILURES
    ):
        raise fail(role, f"failures: expected a number from 1 to {MAX_HEALTH_FAILURES}")
    return ProbeSpec(kind, target, seconds["interval"] or 0.0, seconds["timeout"] or 0.0, failures)


def _seconds(value: object) -> float | None:
    """A number of seconds or a duration string, above 0 and at most MAX_PROBE_SECONDS."""
    if isinstance(value, str):
        try:
            value = parse_duration(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 < value <= MAX_PROBE_SECONDS else None


def _check_dependencies(path: Path, locate: Any, processes: dict[str, ProcessSpec]) -> None:
    """Every name in a ``depends_on`` is a declared process, and no process depends on itself
    through others (the cycle is named in full, at the line of the first ``depends_on`` in it)."""
    for name, spec in processes.items():
        for other in spec.depends_on:
            if other not in processes:
                raise ConfigError(
                    path,
                    locate(f"processes.{name}", "depends_on") or locate(f"processes.{name}"),
                    f"processes.{name}.depends_on: no process {_show(other)} "
                    f"(declared: {', '.join(processes)})",
                )
    done: set[str] = set()
    for start in processes:
        trail: list[str] = []
        on_trail: set[str] = set()
        stack: list[tuple[str, list[str]]] = [(start, list(processes[start].depends_on))]
        if start in done:
            continue
        trail.append(start)
        on_trail.add(start)
        while stack:
            current, left = stack[-1]
            if not left:
                stack.pop()
                trail.pop()
                on_trail.discard(current)
                done.add(current)
                continue
            following = left.pop(0)
            if following in on_trail:
                cycle = [*trail[trail.index(following) :], following]
                raise ConfigError(
                    path,
                    locate(f"processes.{cycle[0]}", "depends_on"),
                    f"a dependency cycle: {' -> '.join(cycle)}",
                )
            if following in done:
                continue
            trail.append(following)
            on_trail.add(following)
            stack.append((following, list(processes[following].depends_on)))


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _table(
    path: Path, locate: Any, data: dict[str, Any], name: str, keys: set[str]
) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(path, locate(name), f"{name} must be a table")
    for key in table:
        if key not in keys:
            raise ConfigError(
                path,
                locate(name, key),
                f"unknown key {key!r} in [{name}] (expected one of: {', '.join(sorted(keys))})",
            )
    return table


def _size(
    path: Path, locate: Any, table: dict[str, Any], section: str, key: str, default: int
) -> int:
    value = table.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # the caller checks its bounds (comparing a huge int is fine)
    match = _SIZE_PATTERN.match(value) if isinstance(value, str) else None
    if not match:
        raise ConfigError(
            path,
            locate(section, key),
            f'{section}.{key}: expected a size like "256MiB" or a number of bytes',
        )
    whole, fraction = match.group(1), match.group(2) or "0"
    unit = _SIZE_UNITS[(match.group(3) or "").lower()[:1]]
    # Decimal, not float: 400 nines are too large, not infinity (float → int overflowed). With
    # at most 19 digits before the point and 9 after (a billionth of a GiB is a byte), 28-digit
    # decimal arithmetic is exact for every size up to MAX_SIZE.
    if len(whole) > 19 or (size := Decimal(f"{whole}.{fraction[:9]}") * unit) > MAX_SIZE:
        raise ConfigError(path, locate(section, key), f"{section}.{key}: too large")
    return int(size)


def _address(path: Path, locate: Any, table: dict[str, Any], section: str, key: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    try:
        parse_address(value)
    except ValueError as exc:
        raise ConfigError(path, locate(section, key), f"{section}.{key}: {exc}") from None
    return str(value)


def parse_address(value: object) -> tuple[str, int]:
    """``"host:port"`` → (host, port); raises ValueError with a reason."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f'expected "HOST:PORT", got {_show(value)}')
    host, _, port_text = value.rpartition(":")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad port in {_show(value)}")
    return host.strip("[]") or "127.0.0.1", int(port_text)


def _signal(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value in signal.valid_signals() else None
    if not isinstance(value, str):
        return None
    name = value.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    sig = getattr(signal.Signals, name, None)
    return int(sig) if sig is not None else None


_NAME_RULE = "use letters, digits, '_', '.', '-', starting with a letter or digit"


def _check_name(path: Path, line: int | None, name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ConfigError(path, line, f"bad process name {name!r}: {_NAME_RULE}")
    if name == ALL:
        raise ConfigError(path, line, f"the name {ALL!r} is kept for every process: rename it")
