"""PORT, .env files, Procfile tolerance and formations: what each process's environment holds,
read from real child processes (each writes its environment to a file under tmp_path)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import wait_for, wait_until, write_config

from lacrimosa.engine.config import MAX_CONFIG_WARNINGS, load_config
from lacrimosa.engine.console import Console
from lacrimosa.engine.dotenv import MAX_ENV_FILE_BYTES, read_env_file
from lacrimosa.engine.errors import ConfigError, InvalidRequest, NoSuchProcess
from lacrimosa.engine.formation import MAX_INSTANCES, ProjectOptions, parse_formation, select
from lacrimosa.tui import LacrimosaApp

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "lacrimosa.api.cli"]

# A child that writes its whole environment as JSON to $OUT/$PS.json, then waits.
DUMP_ENV = (
    f"{sys.executable} -c 'import json, os; "
    'json.dump(dict(os.environ), open(os.path.join(os.environ["OUT"], os.environ["PS"] + ".json"), "w"))\''
    " && sleep 300"
)


def ports(path: Path, options: ProjectOptions | None = None) -> dict[str, str]:
    config = load_config(path, options or ProjectOptions(environ={}))
    return {name: spec.environment()["PORT"] for name, spec in config.processes.items()}


def read_dumps(out: Path, names: list[str]) -> dict[str, dict[str, str]]:
    """The environments the children ``names`` (their PS) wrote, once all have written."""
    paths = [out / f"{name}.json" for name in names]
    wait_until(lambda: all(p.is_file() and p.stat().st_size for p in paths), timeout=15)

    def load(path: Path) -> dict[str, str]:
        return wait_until(lambda: load_json_or_none(path))  # written, maybe not closed yet

    return {name: load(path) for name, path in zip(names, paths, strict=True)}


def load_json_or_none(path: Path) -> dict[str, str] | None:
    try:
        value: dict[str, str] = json.loads(path.read_text())
    except ValueError:
        return None
    return value


# -- PORT ----------------------------------------------------------------------------------------


def test_port_goes_up_by_100_per_type_in_file_order(tmp_path: Path) -> None:
    path = write_config(tmp_path, "web: a\nworker: b\nclock: c\n", "Procfile")
    assert ports(path) == {"web": "5000", "worker": "5100", "clock": "5200"}
    assert ports(path, ProjectOptions(base_port=6000, environ={})) == {
        "web": "6000",
        "worker": "6100",
        "clock": "6200",
    }
    # PORT in the environment sets the base, as in honcho; -p beats it.
    assert ports(path, ProjectOptions(environ={"PORT": "3000"}))["worker"] == "3100"
    assert ports(path, ProjectOptions(base_port=4000, environ={"PORT": "3000"}))["web"] == "4000"


def test_port_from_dotenv_and_explicit_ports_win(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=7000\n")
    path = write_config(
        tmp_path,
        """
        [processes.web]
        cmd = "a"
        [processes.api]
        cmd = "b"
        port = 8080
        instances = 2
        [processes.admin]
        cmd = "c"
        env = { PORT = "9999" }
        [processes.last]
        cmd = "d"
        """,
    )
    # .env's PORT beats the environment's; port = N is the type's own base, +1 per instance;
    # an explicit env.PORT is taken as is; the type index still counts every type.
    assert ports(path, ProjectOptions(environ={"PORT": "3000"})) == {
        "web": "7000",
        "api.1": "8080",
        "api.2": "8081",
        "admin": "9999",
        "last": "7300",
    }


def test_ports_past_65535_and_bad_ports_are_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "web: a\nworker: b\n", "Procfile")
    with pytest.raises(ConfigError, match=r"worker\.1 would get PORT 65635"):
        ports(path, ProjectOptions(base_port=65535, environ={}))
    with pytest.raises(InvalidRequest, match="PORT in the environment"):
        ports(path, ProjectOptions(environ={"PORT": "http"}))
    (tmp_path / ".env").write_text("# the port\nPORT=seventy\n")
    with pytest.raises(ConfigError) as caught:
        ports(path)
    assert caught.value.path == tmp_path / ".env" and caught.value.line == 2


def test_each_child_sees_its_port_and_instance_name(
    tmp_path: Path, console: Callable[..., Console]
) -> None:
    (tmp_path / ".env").write_text(f"OUT={tmp_path}\n")
    running = console(f"web: {DUMP_ENV}\nworker: {DUMP_ENV}\n", name="Procfile")
    seen = read_dumps(tmp_path, ["web.1", "worker.1"])
    assert seen["web.1"]["PORT"] == "5000" and seen["worker.1"]["PORT"] == "5100"
    # ps shows the plain name of a type's only instance; its environment has the instance's.
    assert [info.name for info in running.processes()] == ["web", "worker"]
    assert seen["web.1"]["LACRIMOSA_PROCESS"] == "web.1"
    assert [info.instance for info in running.processes()] == ["web.1", "worker.1"]


# -- .env files ----------------------------------------------------------------------------------

DOTENV_CASES = {
    "plain": ("A=1", "1"),
    "export": ("export A=1", "1"),
    "spaces around =": ("A = 1", "1"),
    "double quotes": ('A="x y"', "x y"),
    "single quotes": ("A='x \\n y'", "x \\n y"),
    "escapes in double quotes": ('A="a\\nb\\tc\\"d\\\\e"', 'a\nb\tc"d\\e'),
    "other backslash kept": ('A="C:\\dir"', "C:\\dir"),
    "comment after a space": ("A=value # a comment", "value"),
    "hash inside a word": ("A=x#y", "x#y"),
    "comment after quotes": ("A='x' # c", "x"),
    "empty": ("A=", ""),
    "inner spaces": ("A=a b", "a b"),
    "no expansion": ("A=$HOME/x", "$HOME/x"),
    "url": ("A=http://x.y/a-b?c=d&e", "http://x.y/a-b?c=d&e"),
}


@pytest.mark.parametrize("line, value", DOTENV_CASES.values(), ids=DOTENV_CASES.keys())
def test_dotenv_values(tmp_path: Path, line: str, value: str) -> None:
    path = tmp_path / ".env"
    path.write_text(f"\ufeff# comment\n\n{line}\n")
    assert {k: v.value for k, v in read_env_file(path).items()} == {"A": value}
    assert read_env_file(path)["A"].source == f"{path}:3"


DOTENV_ERRORS = {
    "no =": ("A 1", "expected NAME=value"),
    "bad name": ("1A=x", "expected NAME=value"),
    "unterminated": ('A="x', "no closing"),
    "text after quote": ("A='x' y", "after the closing quote"),
}


@pytest.mark.parametrize("line, fragment", DOTENV_ERRORS.values(), ids=DOTENV_ERRORS.keys())
def test_dotenv_errors_carry_file_and_line(tmp_path: Path, line: str, fragment: str) -> None:
    (tmp_path / ".env").write_text(f"OK=1\n{line}\n")
    path = write_config(tmp_path, "web: a\n", "Procfile")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == tmp_path / ".env" and caught.value.line == 2
    assert fragment in caught.value.reason
    assert str(caught.value).startswith(f"{tmp_path / '.env'}:2: ")


def test_env_files_have_bounds_and_must_exist(tmp_path: Path) -> None:
    path = write_config(tmp_path, "web: a\n", "Procfile")
    big = tmp_path / "big.env"
    big.write_bytes(b"# padding\n" * (MAX_ENV_FILE_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match="too large"):
        load_config(path, ProjectOptions(env_files=(big,)))
    with pytest.raises(ConfigError, match="env file not found"):
        load_config(path, ProjectOptions(env_files=(tmp_path / "missing.env",)))
    toml = write_config(tmp_path, '[processes.web]\ncmd = "a"\nenv_file = ["gone.env"]\n')
    with pytest.raises(ConfigError, match="env_file: no such file") as caught:
        load_config(toml)
    assert caught.value.line == 3


def test_environment_layers_precedence(tmp_path: Path, console: Callable[..., Console]) -> None:
    """process env > env_file > -e > .env > the console's environment, seen by the child."""
    (tmp_path / ".env").write_text(f"OUT={tmp_path}\nL1=dotenv\nL2=dotenv\nL3=dotenv\nL4=dotenv\n")
    (tmp_path / "extra.env").write_text("L2=extra\nL3=extra\nL4=extra\n")
    (tmp_path / "web.env").write_text("L3=env_file\nL4=env_file\n")
    path = write_config(
        tmp_path,
        f"""
        [processes.web]
        cmd = '''{DUMP_ENV}'''
        env_file = "web.env"
        env = {{ L4 = "env" }}
        [processes.other]
        cmd = '''{DUMP_ENV}'''
        """,
    )
    config = load_config(path, ProjectOptions(env_files=(tmp_path / "extra.env",)))
    running = Console(config, tmp_path / ".lacrimosa")
    try:
        running.start()
        seen = read_dumps(tmp_path, ["web.1", "other.1"])
    finally:
        running.shutdown()
    web, other = seen["web.1"], seen["other.1"]
    assert [web[f"L{n}"] for n in range(1, 5)] == ["dotenv", "extra", "env_file", "env"]
    assert [other[f"L{n}"] for n in range(1, 5)] == ["dotenv", "extra", "extra", "extra"]
    assert web["PATH"] == other["PATH"]  # the console's environment below them all
    sources = config.processes["web"].env_sources
    assert sources["L1"] == f"{tmp_path / '.env'}:2"
    assert sources["L2"] == f"{tmp_path / 'extra.env'}:1"
    assert sources["L3"] == f"{tmp_path / 'web.env'}:1"
    assert sources["L4"] == f"{path}:5"


# -- the real CLI ----------------------------------------------------------------------------------


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LACRIMOSA_HOME", "PORT")}
    env["PYTHONPATH"] = str(REPO)
    return env


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=folder, capture_output=True, text=True, env=cli_env(), timeout=60
    )


class Headless:
    """A running ``lacrimosa up --headless``; ``stderr`` holds what it wrote once it ended."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.stderr = ""


@contextlib.contextmanager
def headless(folder: Path, *up_args: str) -> Iterator[Headless]:
    """``lacrimosa up --headless`` in ``folder`` once it answers; shut down on the way out."""
    proc = subprocess.Popen(
        [*CLI, "up", "--headless", *up_args],
        cwd=folder,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Headless(proc)
    try:
        wait_until(lambda: proc.poll() is not None or cli(folder, "ps").returncode == 0, 20)
        assert proc.poll() is None, proc.communicate()
        yield running
    finally:
        if proc.poll() is None:
            cli(folder, "shutdown")
        try:
            running.stderr = proc.communicate(timeout=30)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            running.stderr = proc.communicate()[1]


# -- Procfile tolerance ----------------------------------------------------------------------------

TOLERATED = (
    "\ufeffbom: echo first line\n"  # 1
    "web: sleep 300\n"  # 2
    "This Procfile runs the web tier.\n"  # 3
    "- worker: sleep 300\n"  # 4
    "we$b: sleep 300\n"  # 5
    "empty:\n"  # 6
    "clock: sleep 300\n"  # 7
)


def test_procfile_lines_that_are_not_name_command_are_skipped_with_a_warning(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, TOLERATED, "Procfile")
    config = load_config(path)
    assert list(config.processes) == ["web", "clock"]
    lines = [int(w.split(":")[1]) for w in config.warnings]
    assert lines == [1, 3, 4, 5, 6]
    assert "byte-order mark" in config.warnings[0]
    assert all(w.startswith(f"{path.resolve()}:") for w in config.warnings)
    # PORT counts the types that run, in file order.
    assert config.processes["clock"].environment()["PORT"] == "5100"
    # A name twice is still an error, at its second line.
    write_config(tmp_path, "web: a\nweb: b\n", "Procfile")
    with pytest.raises(ConfigError, match="declared twice") as caught:
        load_config(path)
    assert caught.value.line == 2


def test_procfile_warnings_are_bounded(tmp_path: Path) -> None:
    path = write_config(tmp_path, "web: a\n" + "prose line\n" * 1000, "Procfile")
    warnings = load_config(path).warnings
    assert len(warnings) == MAX_CONFIG_WARNINGS + 1
    assert warnings[-1].endswith(f"{1000 - MAX_CONFIG_WARNINGS} more lines skipped")


def test_procfile_warnings_reach_ps_and_headless_stderr(tmp_path: Path) -> None:
    write_config(tmp_path, TOLERATED, "Procfile")
    with headless(tmp_path) as running:
        ps = cli(tmp_path, "ps")
        assert ps.returncode == 0
        assert [row.split()[0] for row in ps.stdout.splitlines()[1:]] == ["web", "clock"]
        assert ps.stderr.count("lacrimosa: warning: ") == 5
        assert "Procfile:3: line skipped: expected 'name: command'" in ps.stderr
        as_json = json.loads(cli(tmp_path, "ps", "--json").stdout)
        assert len(as_json["warnings"]) == 5
    assert "Procfile:4: line skipped" in running.stderr


async def test_procfile_warnings_are_notified_in_the_tui(
    tmp_path: Path, console: Callable[..., Console]
) -> None:
    instance = console(TOLERATED, name="Procfile")
    app = LacrimosaApp(instance)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(
            pilot,
            lambda: sum("line skipped" in n.message for n in app._notifications) == 5,
            "five notifications",
        )


# -- formation and subsets -------------------------------------------------------------------------


def test_parse_formation() -> None:
    assert parse_formation("web=2, worker=1") == {"web": 2, "worker": 1}
    assert parse_formation("all=3") == {"all": 3}
    for bad in ("web", "web=", "=2", "web=two", "web=0", f"web={MAX_INSTANCES + 1}", "web=²"):
        with pytest.raises(ValueError):
            parse_formation(bad)


def test_instances_get_their_own_names_and_ports(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [processes.web]
        cmd = "a"
        instances = 3
        [processes.worker]
        cmd = "b"
        """,
    )
    assert ports(path) == {"web.1": "5000", "web.2": "5001", "web.3": "5002", "worker": "5100"}
    formed = ProjectOptions(formation={"web": 1, "worker": 2}, environ={})
    assert ports(path, formed) == {"web": "5000", "worker.1": "5100", "worker.2": "5101"}
    config = load_config(path, ProjectOptions(formation={"all": 2}, environ={}))
    assert [
        (s.name, s.instance_name, s.environment()["PS"]) for s in config.processes.values()
    ] == [
        ("web.1", "web.1", "web.1"),
        ("web.2", "web.2", "web.2"),
        ("worker.1", "worker.1", "worker.1"),
        ("worker.2", "worker.2", "worker.2"),
    ]
    with pytest.raises(InvalidRequest, match="no process type 'nope'"):
        load_config(path, ProjectOptions(formation={"nope": 2}))


def test_formations_past_the_bounds_and_clashing_names_are_refused(tmp_path: Path) -> None:
    many = "".join(f"t{i}: a\n" for i in range(11))
    path = write_config(tmp_path, many, "Procfile")
    with pytest.raises(ConfigError, match="more than 1000 processes"):
        load_config(path, ProjectOptions(formation={"all": MAX_INSTANCES}, base_port=1000))
    toml = write_config(tmp_path, '[processes.web]\ncmd = "a"\ninstances = 101\n')
    with pytest.raises(ConfigError, match="instances: must be a number from 1 to 100"):
        load_config(toml)
    clash = write_config(
        tmp_path,
        '[processes."web.2"]\ncmd = "a"\n[processes.web]\ncmd = "b"\ninstances = 2\n',
    )
    with pytest.raises(ConfigError, match=r"'web\.2' is both"):
        load_config(clash)
    reserved = write_config(tmp_path, '[processes.all]\ncmd = "a"\n')
    with pytest.raises(ConfigError, match="kept for every process"):
        load_config(reserved)


def test_select_resolves_instances_types_all_and_globs(tmp_path: Path) -> None:
    path = write_config(tmp_path, "web: a\nworker: b\nwatch: c\n", "Procfile")
    specs = load_config(path, ProjectOptions(formation={"worker": 2}, environ={})).processes
    assert select(specs, "all") == ["web", "worker.1", "worker.2", "watch"]
    assert select(specs, "worker") == ["worker.1", "worker.2"]
    assert select(specs, "worker.2") == ["worker.2"]
    assert select(specs, "web") == select(specs, "web.1") == ["web"]
    assert select(specs, "w*") == ["web", "worker.1", "worker.2", "watch"]
    assert select(specs, "*.2") == ["worker.2"]
    assert select(specs, "wa?ch") == ["watch"]
    for unknown in ("nope", "web.2", "x*"):
        with pytest.raises(NoSuchProcess):
            select(specs, unknown)


def test_up_names_formation_and_verbs_on_types(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"OUT={tmp_path}\n")
    write_config(tmp_path, f"web: {DUMP_ENV}\nworker: {DUMP_ENV}\nclock: {DUMP_ENV}\n", "Procfile")
    with headless(tmp_path, "-m", "web=2", "web", "worker"):
        seen = read_dumps(tmp_path, ["web.1", "web.2", "worker.1"])
        assert [seen[n]["PORT"] for n in ("web.1", "web.2", "worker.1")] == [
            "5000",
            "5001",
            "5100",
        ]
        ps = wait_until(lambda: _ps_when(tmp_path, lambda p: p["web.2"]["pid"]))
        assert {n: p["state"] for n, p in ps.items()} == {
            "web.1": "running",
            "web.2": "running",
            "worker": "running",
            "clock": "stopped",  # known, not started: up named the others
        }
        # A type: every instance, at once; one line per process.
        first = {n: ps[n]["pid"] for n in ("web.1", "web.2")}
        restarted = cli(tmp_path, "restart", "web")
        assert restarted.returncode == 0, restarted.stderr
        assert [line.split(":")[0] for line in restarted.stdout.splitlines()] == ["web.1", "web.2"]
        after = _ps_when(tmp_path, lambda p: True)
        assert all(after[n]["pid"] not in (None, first[n]) for n in first)
        assert after["worker"]["restarts"] == 0
        # A glob and an instance; JSON lists each result.
        stopped = json.loads(cli(tmp_path, "stop", "web.*", "--json").stdout)
        assert [r["name"] for r in stopped["results"]] == ["web.1", "web.2"]
        started = json.loads(cli(tmp_path, "start", "clock", "--json").stdout)
        assert started["outcome"] == "started" and started["process"]["instance"] == "clock.1"
        assert cli(tmp_path, "restart", "nope").returncode == 3
        # logs of a type: its instances merged, each line with its name.
        cli(tmp_path, "start", "web.2")
        wait_until(lambda: "web.2 | " in cli(tmp_path, "logs", "web").stdout or None)
        # One instance killed: only it restarts (its own restart policy and counters).
        pid = _ps_when(tmp_path, lambda p: p["web.2"]["pid"])["web.2"]["pid"]
        os.kill(pid, 9)
        again = wait_until(lambda: _ps_when(tmp_path, lambda p: p["web.2"]["restarts"] == 1))
        assert again["web.1"]["state"] == "stopped" and again["web.1"]["restarts"] == 1


def _ps_when(folder: Path, predicate: Callable[[dict[str, dict]], object]) -> dict | None:
    result = cli(folder, "ps", "--json")
    if result.returncode != 0:
        return None
    processes = {p["name"]: p for p in json.loads(result.stdout)["processes"]}
    return processes if predicate(processes) else None


# -- check and run ---------------------------------------------------------------------------------


def test_check_prints_processes_ports_and_sources_without_secret_values(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SECRET=hunter2\nPORT=7000\n")
    write_config(tmp_path, "web: serve\nworker: work\nprose\n", "Procfile")
    text = cli(tmp_path, "check", "-m", "worker=2")
    assert text.returncode == 0, text.stderr
    assert "web  PORT=7000  PS=web.1" in text.stdout
    assert "worker.2  PORT=7101  PS=worker.2" in text.stdout
    assert f"SECRET from {tmp_path / '.env'}:1" in text.stdout
    assert "hunter2" not in text.stdout  # names and sources only, but for PORT and PS
    assert "Procfile:3: line skipped" in text.stderr
    report = json.loads(cli(tmp_path, "check", "--json", "-p", "6000").stdout)
    assert report["base_port"] == 6000 and report["base_port_source"] == "-p"
    assert report["env_files"] == [str(tmp_path / ".env")]
    assert [(p["name"], p["port"]) for p in report["processes"]] == [
        ("web", "6000"),
        ("worker", "6100"),
    ]
    assert len(report["warnings"]) == 1
    assert "hunter2" not in json.dumps(report)


def test_check_reports_errors_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OK=1\nnot an assignment\n")
    write_config(tmp_path, "web: serve\n", "Procfile")
    text = cli(tmp_path, "check")
    assert text.returncode == 1
    assert f"{tmp_path / '.env'}:2: expected NAME=value" in text.stderr
    as_json = cli(tmp_path, "check", "--json")
    assert as_json.returncode == 1 and as_json.stdout == ""
    assert json.loads(as_json.stderr)["error"]["code"] == "config"
    assert cli(tmp_path, "check", "-m", "nope=2").returncode == 2


def test_run_a_command_or_a_process_with_the_project_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GREETING='hello there'\n")
    (tmp_path / "sub").mkdir()
    write_config(
        tmp_path,
        """
        [processes.web]
        cmd = "echo $PS $PORT $GREETING $(basename $PWD); exit 4"
        cwd = "sub"
        instances = 2
        [processes.worker]
        cmd = "true"
        """,
    )
    show = "echo $PORT $GREETING; exit 7"
    ran = cli(tmp_path, "run", "-p", "6000", "--", "sh", "-c", show)
    assert (ran.returncode, ran.stdout) == (7, "6000 hello there\n")
    assert cli(tmp_path, "run", "web.2").stdout == "web.2 5001 hello there sub\n"
    # A type of several instances runs its first; the exit status is the command's.
    by_type = cli(tmp_path, "run", "web")
    assert (by_type.returncode, by_type.stdout) == (4, "web.1 5000 hello there sub\n")
    assert cli(tmp_path, "run", "nope").returncode == 3
    assert cli(tmp_path, "run", "w*").returncode == 2
    assert cli(tmp_path, "run").returncode == 2
    assert cli(tmp_path, "run", "--", "no-such-command-here").returncode == 127


def test_acting_on_more_processes_than_waiting_threads(
    tmp_path: Path, console: Callable[..., Console]
) -> None:
    """A type of 40 instances, past MAX_PARALLEL_ACTIONS (32) threads: every one is stopped
    and started, each with its own outcome, in about the time of one."""
    from lacrimosa.engine.console import MAX_PARALLEL_ACTIONS

    count = MAX_PARALLEL_ACTIONS + 8
    running = console(f'[processes.web]\ncmd = "exec sleep 300"\ninstances = {count}\n')
    wait_until(lambda: all(info.pid for info in running.processes()))
    stopped = running.act("stop", "web")
    assert [name for name, _ in stopped] == [f"web.{n}" for n in range(1, count + 1)]
    assert {outcome for _, outcome in stopped} == {"stopped"}
    assert all(info.state == "stopped" for info in running.processes())
    started = running.act("start", "web.*")
    assert len(started) == count and {outcome for _, outcome in started} == {"started"}


def test_each_process_a_target_means_is_audited(
    tmp_path: Path, console: Callable[..., Console]
) -> None:
    from lacrimosa.engine.audit import Actor

    running = console('[processes.web]\ncmd = "exec sleep 300"\ninstances = 2\n')
    wait_until(lambda: all(info.pid for info in running.processes()))
    actor = Actor.local("cli")
    running.act("restart", "web", actor)
    with pytest.raises(NoSuchProcess):
        running.act("stop", "nope*", actor)
    records = [
        (r["action"], r["target"], r["outcome"], r["actor"]["source"])
        for r in running.audit.records()
    ]
    assert sorted(records[-3:-1]) == [
        ("restart", "web.1", "ok", "cli"),
        ("restart", "web.2", "ok", "cli"),
    ]
    assert records[-1] == ("stop", "nope*", "no_such_process", "cli")
