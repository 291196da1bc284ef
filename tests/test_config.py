"""Config loading: every mistake names the file, the line and the reason; valid configs load whole.

In the TOML cases below the line the error must point at carries the comment ``# <-``.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from helpers import write_config
from hypothesis import given, settings
from hypothesis import strategies as st

from lacrimosa.engine.config import DEFAULT_LOG_BUDGET, RESTART_POLICIES, load_config
from lacrimosa.engine.errors import ConfigError

HEAD = '[processes.web]\ncmd = "python -m http.server"\n'

TOML_ERRORS = {
    "bad syntax": (HEAD + "restart = on-failure  # <-\n", "invalid TOML"),
    "bad syntax, unclosed string": (
        HEAD + '[processes.db]\ncmd = "postgres  # <-\n',
        "invalid TOML",
    ),
    "unknown section": (HEAD + '\n[database]  # <-\nurl = "x"\n', "unknown section 'database'"),
    "unknown key": (HEAD + 'colour = "red"  # <-\n', "unknown key 'colour'"),
    "missing cmd": (
        '[processes.web]\ncmd = "a"\n[processes.worker]  # <-\ncwd = "."\n',
        "has no cmd",
    ),
    "empty cmd": ('[processes.web]\ncmd = "   "  # <-\n', "must be a non-empty string"),
    "cmd not a string": (
        '[processes.web]\ncmd = ["python", "app.py"]  # <-\n',
        "must be a non-empty string",
    ),
    "bad restart policy": (HEAD + 'restart = "sometimes"  # <-\n', "'sometimes'"),
    "bad stop_signal": (HEAD + 'stop_signal = "SIGFOO"  # <-\n', "unknown signal 'SIGFOO'"),
    "bad stop_signal number": (HEAD + "stop_signal = 999  # <-\n", "unknown signal 999"),
    "bad cwd": (HEAD + 'cwd = "no/such/folder"  # <-\n', "folder does not exist"),
    "cwd not a string": (HEAD + "cwd = 3  # <-\n", "must be a string"),
    "negative stop_timeout": (HEAD + "stop_timeout = -1  # <-\n", "number of seconds"),
    "text backoff": (HEAD + 'backoff_initial = "fast"  # <-\n', "number of seconds"),
    "boolean stable_after": (HEAD + "stable_after = true  # <-\n", "number of seconds"),
    "huge backoff_max": (HEAD + "backoff_max = 99999  # <-\n", "number of seconds"),
    "env not a table": (HEAD + 'env = "PORT=1"  # <-\n', "env"),
    "env value a list": (HEAD + "env = { PORT = [1] }  # <-\n", "env"),
    "env name with '='": (HEAD + 'env = { "A=B" = "1" }  # <-\n', "env"),
    "env value with NUL": (HEAD + 'env = { A = "x\\u0000y" }  # <-\n', "env"),
    "cmd with NUL": ('[processes.web]\ncmd = "echo \\u0000"  # <-\n', "cmd"),
    "autostart not a bool": (HEAD + 'autostart = "yes"  # <-\n', "true or false"),
    "bad process name": ('[processes."bad name"]  # <-\ncmd = "x"\n', "bad process name"),
    "process not a table": ('[processes]\nweb = "python app.py"  # <-\n', "must be a table"),
    "inline process table": (
        '[processes]\nweb = { cmd = "x", restart = "maybe" }  # <-\n',
        "'maybe'",
    ),
    "empty processes table": (
        '[processes]  # <-\n\n[http]\nbind = "127.0.0.1:3000"\n',
        "declares no processes",
    ),
    "bad size": (HEAD + '[logs]\nbudget = "lots"  # <-\n', "expected a size"),
    "budget too small": (HEAD + '[logs]\nbudget = "1MiB"  # <-\n', "at least"),
    "max_line too big": (HEAD + '[logs]\nmax_line = "2MiB"  # <-\n', "between"),
    "unknown logs key": (
        HEAD + '[logs]\nbudget = "64MiB"\ncolour = 1  # <-\n',
        "unknown key 'colour'",
    ),
    "bad http bind": (HEAD + '[http]\nbind = "localhost"  # <-\n', "HOST:PORT"),
    "metrics_public not a boolean": (
        HEAD + '[http]\nbind = "127.0.0.1:0"\nmetrics_public = "yes"  # <-\n',
        "true or false",
    ),
    "bad udp port": (HEAD + '[sequencer]\nudp = "127.0.0.1:99999"  # <-\n', "bad port"),
    "sequencer not a table": ('sequencer = "127.0.0.1:9000"  # <-\n' + HEAD, "must be a table"),
    # Values that used to end in a traceback instead of file:line: reason.
    "a size of 400 nines": (HEAD + f'[logs]\nbudget = "{"9" * 400}"  # <-\n', "too large"),
    "a size integer over 1TiB": (HEAD + f"[logs]\nbudget = {'9' * 30}  # <-\n", "at most 1TiB"),
    "an integer literal over 4300 digits": (
        HEAD + f"[logs]\nbudget = {'9' * 4301}  # <-\n",
        "more than 4300 digits",
    ),
    "an integer literal over 4300 digits with underscores": (
        HEAD + f"stop_timeout = 1{'_1' * 4400}  # <-\n",
        "more than 4300 digits",
    ),
    "a huge hex env value": (HEAD + f"env = {{ A = 0x{'f' * 5000} }}  # <-\n", "too large"),
    "a huge hex signal": (HEAD + f"stop_signal = 0x{'f' * 5000}  # <-\n", "unknown signal"),
    "a huge hex restart": (HEAD + f"restart = 0x{'f' * 5000}  # <-\n", "must be one of"),
    "arrays nested too deeply": (
        HEAD + f"env = {'[' * 3000}{']' * 3000}  # <-\n",
        "nested too deeply",
    ),
    "a cwd too long for the OS": (HEAD + f'cwd = "{"a" * 300}"  # <-\n', "too long"),
    "a cwd path too long for the OS": (HEAD + f'cwd = "{"a/" * 3000}"  # <-\n', "too long"),
    "a journal too long for the OS": (
        HEAD + f'[sequencer]\nudp = "127.0.0.1:9000"\njournal = "{"j" * 300}"  # <-\n',
        "File name too long",
    ),
    "a journal under a file": (
        HEAD + '[sequencer]\njournal = "lacrimosa.toml/events"  # <-\n',
        "Not a directory",
    ),
    "a journal that is a folder": (HEAD + '[sequencer]\njournal = "."  # <-\n', "is a folder"),
    "a port in other digits": (HEAD + '[http]\nbind = "h:\u00b2"  # <-\n', "bad port"),
    "a port too long to read": (HEAD + f'[http]\nbind = "h:{"9" * 5000}"  # <-\n', "bad port"),
}


@pytest.mark.parametrize("text, fragment", TOML_ERRORS.values(), ids=TOML_ERRORS.keys())
def test_toml_errors_name_file_line_and_reason(tmp_path: Path, text: str, fragment: str) -> None:
    path = write_config(tmp_path, text)
    marked = [n for n, line in enumerate(text.splitlines(), start=1) if "# <-" in line]
    assert len(marked) == 1
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert error.path == path.resolve()
    assert error.line == marked[0], error
    assert fragment in error.reason
    assert str(error) == f"{path.resolve()}:{marked[0]}: {error.reason}"


def test_a_toml_without_processes_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[http]\nbind = "127.0.0.1:3000"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == path.resolve()
    assert caught.value.line is None  # there is no line to point at
    assert "declares no processes" in caught.value.reason
    assert str(caught.value).startswith(f"{path.resolve()}: ")


# Lines that are not `name: command` are skipped with a warning (tests/test_procenv.py).
PROCFILE_ERRORS = {
    "duplicate": ("web: a\n# a comment\nweb: b\n", 3, "declared twice"),
    "no processes": ("# only a comment\n\n", None, "declares no processes"),
    "only skipped lines": ("web a\nwe$b: b\n", None, "declares no processes"),
}


@pytest.mark.parametrize(
    "text, line, fragment", PROCFILE_ERRORS.values(), ids=PROCFILE_ERRORS.keys()
)
def test_procfile_errors_name_file_line_and_reason(
    tmp_path: Path, text: str, line: int | None, fragment: str
) -> None:
    path = write_config(tmp_path, text, "Procfile")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == path.resolve()
    assert caught.value.line == line
    assert fragment in caught.value.reason


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "lacrimosa.toml")
    (tmp_path / "Procfile").write_bytes(b"web: caf\xe9\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "Procfile")


def test_a_full_config_round_trips_every_field(tmp_path: Path) -> None:
    (tmp_path / "services" / "api").mkdir(parents=True)
    path = write_config(
        tmp_path,
        """
        [processes.api]
        cmd = "python -m http.server 8000"
        cwd = "services/api"
        env = { PORT = "8000", WORKERS = 4, DEBUG = true, RATIO = 0.5 }
        restart = "always"
        stop_signal = "INT"
        stop_timeout = 2.5
        backoff_initial = 0.25
        backoff_max = 8
        stable_after = 3
        autostart = false

        [processes.worker]
        cmd = "python worker.py"

        [processes."db.main"]
        cmd = "postgres"
        restart = "never"
        stop_signal = 15

        [processes.db-replica]
        cmd = "postgres --replica"
        restart = "on-failure"
        stop_signal = "sigquit"

        [processes.worker.env]
        QUEUE = "jobs"

        [logs]
        budget = "64MiB"
        max_line = "16 KiB"

        [sequencer]
        udp = "127.0.0.1:9000"

        [http]
        bind = "[::1]:3000"
    """,
    )
    config = load_config(path)
    assert config.path == path.resolve()
    assert config.root == tmp_path.resolve()
    assert list(config.processes) == ["api", "worker", "db.main", "db-replica"]

    api = config.processes["api"]
    assert api.name == "api"
    assert api.cmd == "python -m http.server 8000"
    assert api.cwd == (tmp_path / "services" / "api").resolve()
    assert api.env == {"PORT": "8000", "WORKERS": "4", "DEBUG": "1", "RATIO": "0.5"}
    assert api.restart == "always"
    assert api.stop_signal == signal.SIGINT
    assert (api.stop_timeout, api.backoff_initial, api.backoff_max, api.stable_after) == (
        2.5,
        0.25,
        8.0,
        3.0,
    )
    assert api.autostart is False

    worker = config.processes["worker"]
    assert worker.env == {"QUEUE": "jobs"}
    assert worker.cwd == tmp_path.resolve()
    assert worker.restart == "on-failure"  # the defaults
    assert worker.stop_signal == signal.SIGTERM
    assert (
        worker.stop_timeout,
        worker.backoff_initial,
        worker.backoff_max,
        worker.stable_after,
    ) == (5.0, 0.5, 30.0, 10.0)
    assert worker.autostart is True

    assert config.processes["db.main"].restart == "never"
    assert config.processes["db.main"].stop_signal == signal.SIGTERM
    assert config.processes["db-replica"].stop_signal == signal.SIGQUIT
    assert config.log_budget_bytes == 64 << 20
    assert config.max_line_bytes == 16 << 10
    assert config.udp == "127.0.0.1:9000"
    assert config.http == "[::1]:3000"


def test_a_minimal_config_gets_the_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, '[processes.web]\ncmd = "x"\n'))
    assert config.log_budget_bytes == DEFAULT_LOG_BUDGET
    assert config.max_line_bytes == 64 << 10
    assert (config.udp, config.http, config.http_metrics_public) == (None, None, False)
    assert config.processes["web"].restart in RESTART_POLICIES


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("max_line", '"300000"', 300000),
        ("max_line", '"512KiB"', 512 << 10),
        ("max_line", '"300 B"', 300),
        ("max_line", "1024", 1024),
        ("budget", '"64 MB"', 64 << 20),
        ("budget", '"1.5GiB"', 3 << 29),
        ("budget", '"16mib"', 16 << 20),
        ("budget", "9000000", 9000000),
    ],
)
def test_sizes(tmp_path: Path, key: str, value: str, expected: int) -> None:
    config = load_config(write_config(tmp_path, f"{HEAD}[logs]\n{key} = {value}\n"))
    assert (config.log_budget_bytes if key == "budget" else config.max_line_bytes) == expected


def test_a_procfile_works_as_is(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        (
            "# the web tier\n"
            "web: python -m http.server --bind 127.0.0.1:8000\n"
            "\n"
            "worker:python worker.py --queue=a:b\n"
            "  clock :  sh -c 'while :; do date; sleep 1; done'  \n"
        ),
        "Procfile",
    )
    config = load_config(path)
    assert config.path == path.resolve()
    assert {name: spec.cmd for name, spec in config.processes.items()} == {
        "web": "python -m http.server --bind 127.0.0.1:8000",
        "worker": "python worker.py --queue=a:b",
        "clock": "sh -c 'while :; do date; sleep 1; done'",
    }
    for spec in config.processes.values():
        assert spec.cwd == tmp_path.resolve()
        assert spec.restart == "on-failure"
        assert spec.autostart is True
    assert config.log_budget_bytes == DEFAULT_LOG_BUDGET


def test_symlink_loops_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    path = write_config(tmp_path, HEAD + 'cwd = "loop"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.line == 3 and "processes.web.cwd" in caught.value.reason
    (tmp_path / "Procfile").symlink_to("Procfile")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "Procfile")


# -- whatever the text, a Config or a ConfigError ------------------------------------------------

# The README's full example (kept in step by hand) and the demo's config.
README_EXAMPLE = """
[processes.api]
cmd = "python -m http.server 8000"   # run with /bin/sh -c, in its own process group
cwd = "."                            # relative to this file
env = { PORT = "8000" }              # added to the console's environment
restart = "on-failure"               # never | on-failure | always
stop_signal = "SIGTERM"              # sent to the whole process group on stop
stop_timeout = 5                     # seconds before SIGKILL to the group
backoff_initial = 0.5                # restart delay, doubled on each quick failure...
backoff_max = 30                     # ...up to this
stable_after = 10                    # a run this long resets the backoff
autostart = true                     # false: start it by hand (`lacrimosa start api`)

[logs]
budget = "256MiB"                    # memory for all logs; the oldest whole blocks go first
max_line = "64KiB"                   # longer lines are split into pieces (and counted)

[sequencer]
udp = "127.0.0.1:9000"               # receive events here (no sequencer without it)
journal = ".lacrimosa/events.journal" # relative to this file; default: in the state folder
capacity = 1048576                   # slots in the journal's ring (32 bytes each)
blob = "128MiB"                      # room for the events' payloads
backend = "auto"                     # auto (recvmmsg) | recvmmsg | recv_into | io_uring
rcvbuf = "64MiB"                     # the kernel receive buffer asked for

[http]
bind = "127.0.0.1:3000"              # parsed and checked; the HTTP API comes in a later release
"""
DEMO = (Path(__file__).resolve().parent.parent / "demo" / "lacrimosa.toml").read_text()
VALID = [README_EXAMPLE, DEMO, HEAD]

_toml_strings = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\\n\r'), max_size=40
).map(lambda text: f'"{text}"')
_toml_values = st.one_of(
    st.integers().map(str),
    st.sampled_from(
        [
            "9" * 400,
            "9" * 4301,
            "1_" * 2200 + "1",
            "0x" + "f" * 5000,
            "-0",
            "inf",
            "-inf",
            "nan",
            "1e400",
            "-1.5",
            "true",
            "false",
            "1979-05-27T07:32:00Z",
            "07:32:00",
            "[]",
            "{}",
            '["a", 1]',
            "{ a = 1 }",
            "[" * 3000 + "]" * 3000,
            '"' + "9" * 400 + '"',
            '"' + "a" * 300 + '"',
            '"' + "a/" * 3000 + '"',
            '"/dev/null/x"',
            '"lacrimosa.toml/x"',
            '"."',
            '"h:\u00b2"',
            '"\\u0000"',
            '"SIGKILL"',
            '"1.5 GiB"',
            "'''multi\nline'''",
        ]
    ),
    _toml_strings,
    st.floats().map(repr),
)


@st.composite
def mutated_configs(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(VALID)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines.append(draw(_toml_strings))
        index = draw(st.integers(0, len(lines) - 1))
        line = lines[index]
        kind = draw(st.sampled_from(["value", "value", "delete", "duplicate", "flip", "insert"]))
        if kind == "value" and "=" in line:
            lines[index] = line.split("=", 1)[0] + "= " + draw(_toml_values)
        elif kind == "delete":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, line)
        elif kind == "flip" and line:
            at = draw(st.integers(0, len(line) - 1))
            lines[index] = (
                line[:at] + draw(st.characters(blacklist_categories=("Cs",))) + line[at + 1 :]
            )
        else:
            key = draw(st.sampled_from(["cmd", "cwd", "env", "budget", "journal", "blob", "x"]))
            lines.insert(index, f"{key} = {draw(_toml_values)}")
    return "\n".join(lines) + "\n"


def test_any_mutation_of_a_valid_config_is_a_config_or_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "lacrimosa.toml"

    @settings(max_examples=300, deadline=None, database=None)
    @given(mutated_configs())
    def check(text: str) -> None:
        path.write_text(text, encoding="utf-8")
        try:
            config = load_config(path)
        except ConfigError as error:
            assert error.path == path.resolve()
            assert error.line is None or 1 <= error.line <= len(text.splitlines()) + 1
            assert len(str(error)) < 1000, "an error message echoed a huge value"
        else:
            assert config.processes

    for text in VALID:  # the seeds themselves load
        path.write_text(text, encoding="utf-8")
        assert load_config(path).processes
    check()
