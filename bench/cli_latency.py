"""cli latency: wall time of a one-shot `lacrimosa ps --json` against a running console.

A console with 5 processes is started in the background (``python -m lacrimosa.api.cli up --headless -f
CONFIG``, from a temporary project folder, so the CLI finds it the way a user's shell would);
once ``ps`` answers with all 5 running, each round times ``python -c pass`` and then
``lacrimosa ps --json`` (process start to exit, output read and checked to be the JSON of 5
processes). The console is then stopped with ``lacrimosa shutdown``.

Bytecode is cached as on a user's machine: PYTHONDONTWRITEBYTECODE is unset and the cache goes
to a temporary PYTHONPYCACHEPREFIX (nothing is written into the checkout), warmed by the calls
made while waiting for the console.

Which ``lacrimosa``: the installed entry point's equivalent, ``python -c "from lacrimosa.api.cli
import main; ..."``, with a ``lacrimosa`` package pointing at the code measured on PYTHONPATH. When the repo's ``./lacrimosa`` launcher has its
``.venv`` set up already, the launcher is measured too (it is never set up from here: that would
install packages). ``--cli "COMMAND"`` measures any other command instead.

Target: median under 80 ms (20 rounds). The ratio is to ``python -c pass`` in the same rounds.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    REPO,
    Row,
    Skip,
    code_root,
    fmt_ms,
    main,
    median,
    package_shim,
    percentile,
    startup_env,
)

ROUNDS = 20
QUICK_ROUNDS = 5
PROCESSES = 5
TARGET = 0.080
READY_TIMEOUT = 30.0
ENTRY_POINT = "import sys; from lacrimosa.api.cli import main; sys.exit(main())"

CONFIG = textwrap.dedent("""\
    # lacrimosa bench: five quiet processes
    {processes}
    [logs]
    budget = "64MiB"
""")
PROCESS = textwrap.dedent("""\
    [processes.p{i}]
    cmd = "while :; do echo tick {i}; sleep 1; done"
    restart = "never"
""")


def _launcher_ready(root: Path) -> bool:
    """Whether ./lacrimosa would run straight away, without (re)installing its .venv."""
    venv = Path(os.environ.get("LACRIMOSA_VENV", root / ".venv"))
    stamp = venv / ".lacrimosa-installed"
    return (
        (root / "lacrimosa").is_file()
        and (venv / "bin" / "lacrimosa").is_file()
        and stamp.is_file()
        and stamp.stat().st_mtime >= (root / "pyproject.toml").stat().st_mtime
    )


def _timed_run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed, done.stdout


def _check_ps(output: str) -> bool:
    processes = json.loads(output)["processes"]
    return len(processes) == PROCESSES and all(p["state"] == "running" for p in processes)


def _wait_ready(
    cli: list[str], cwd: Path, env: dict[str, str], console: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if console.poll() is not None:
            raise RuntimeError(f"the console exited {console.returncode}:\n{log.read_text()}")
        done = subprocess.run(
            [*cli, "ps", "--json"], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode == 0 and _check_ps(done.stdout):
            return
        last = done.stderr.strip() or done.stdout.strip()
        time.sleep(0.1)
    raise RuntimeError(f"the console did not answer `ps` in {READY_TIMEOUT}s: {last}")


def measure(cli_commands: dict[str, list[str]], rounds: int) -> dict[str, list[float]]:
    root = code_root()
    with tempfile.TemporaryDirectory(prefix="lacrimosa-bench-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        config = project / "lacrimosa.toml"
        config.write_text(
            CONFIG.format(processes="\n".join(PROCESS.format(i=i) for i in range(1, PROCESSES + 1)))
        )
        env = startup_env(Path(tmp) / "pycache")
        env["PYTHONPATH"] = str(package_shim(root, Path(tmp) / "shim"))
        env.pop("LACRIMOSA_HOME", None)
        python = [sys.executable, "-c", ENTRY_POINT]
        log = Path(tmp) / "console.log"
        with log.open("wb") as log_file:
            console = subprocess.Popen(
                [sys.executable, "-m", "lacrimosa.api.cli", "up", "--headless", "-f", str(config)],
                cwd=project,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        try:
            _wait_ready(python, project, env, console, log)
            times: dict[str, list[float]] = {"python -c pass": []}
            times.update({name: [] for name in cli_commands})
            for cmd in [[sys.executable, "-c", "pass"], *cli_commands.values()]:
                _timed_run([*cmd, "ps", "--json"] if cmd[-1] != "pass" else cmd, project, env)
            for _ in range(rounds):
                times["python -c pass"].append(
                    _timed_run([sys.executable, "-c", "pass"], project, env)[0]
                )
                for name, cmd in cli_commands.items():
                    elapsed, out = _timed_run([*cmd, "ps", "--json"], project, env)
                    if not _check_ps(out):
                        raise RuntimeError(f"unexpected `ps --json` output: {out[:200]}")
                    times[name].append(elapsed)
        finally:
            subprocess.run(
                [*python, "shutdown"], cwd=project, env=env, capture_output=True, check=False
            )
            try:
                console.wait(timeout=20)
            except subprocess.TimeoutExpired:
                console.terminate()
                console.wait(timeout=10)
    return times


def run(quick: bool, cli: str | None = None) -> list[Row]:
    root = code_root()
    if not (root / "api" / "cli.py").is_file():
        raise Skip("api/cli.py does not exist yet")
    rounds = QUICK_ROUNDS if quick else ROUNDS
    commands: dict[str, list[str]] = {}
    if cli:
        commands[cli] = shlex.split(cli)
    else:
        commands["lacrimosa ps --json (entry point)"] = [sys.executable, "-c", ENTRY_POINT]
        if root == REPO and _launcher_ready(root):
            commands["./lacrimosa ps --json (launcher)"] = [str(root / "lacrimosa")]
    times = measure(commands, rounds)
    ref = times.pop("python -c pass")
    rows = []
    for name, values in times.items():
        m, r = median(values), median(ref)
        rows.append(
            Row(
                f"cli latency: {name}, {PROCESSES} processes",
                f"{fmt_ms(m)} (p95 {fmt_ms(percentile(values, 95))})",
                f"{fmt_ms(r)} python -c pass",
                m / r,
                f"< {fmt_ms(TARGET)}",
                m < TARGET,
                notes=[
                    f"median of {rounds} rounds, bytecode cached; runs (ms): "
                    + " ".join(f"{v * 1e3:.0f}" for v in values)
                ],
                data={
                    "median": m,
                    "p95": percentile(values, 95),
                    "reference": r,
                    "runs": values,
                    "reference_runs": ref,
                },
            )
        )
    if not cli and "./lacrimosa ps --json (launcher)" not in times:
        rows[-1].notes.append(
            "./lacrimosa launcher not measured: its .venv is not set up "
            "(setting it up would install packages)"
        )
    return rows


if __name__ == "__main__":
    if "--cli" in sys.argv:
        at = sys.argv.index("--cli")
        command = sys.argv[at + 1]
        del sys.argv[at : at + 2]
        sys.exit(main(lambda quick: run(quick, command), __doc__))
    sys.exit(main(run, __doc__))
