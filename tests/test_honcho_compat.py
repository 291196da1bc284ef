"""The same Procfiles and .env files through honcho (the reference) and through lacrimosa: each
child writes the environment it sees to a file, and the two are compared (PORT, the .env's
variables, which instances run). Where lacrimosa differs on purpose (README, "Coming from
honcho/foreman"), the case is not here but in test_procenv.py."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import wait_until
from test_procenv import cli_env, headless, load_json_or_none

# Writes its environment to $OUT/<instance>.json (PS under lacrimosa, HONCHO_PROCESS_NAME under
# honcho), then waits to be stopped (honcho stops everything when any process exits).
DUMP = (
    f"{sys.executable} -c 'import json, os; "
    'name = os.environ.get("PS") or os.environ["HONCHO_PROCESS_NAME"]; '
    'json.dump(dict(os.environ), open(os.path.join(os.environ["OUT"], name + ".json"), "w"))\''
    " && sleep 300"
)
PROCFILE = f"web: {DUMP}\nworker: {DUMP}\nclock: {DUMP}\n"
# What both read alike: quotes, a comment after a space, \n in double quotes, a URL, spaces
# around =. (honcho drops inner spaces of unquoted values, ignores export lines and empty
# values, and starts a comment at any #: those cases are in test_procenv.py.)
DOTENV = (
    "# the project's settings\n"
    "PLAIN=value\n"
    'DOUBLE="two words"\n'
    "SINGLE='no $expansion here'\n"
    'ESCAPED="line one\\nline two"\n'
    "COMMENTED=kept # dropped\n"
    "URL=postgres://user:pw@127.0.0.1:5432/db?sslmode=disable\n"
    "SPACED = 42\n"
)
CUSTOM = ("PLAIN", "DOUBLE", "SINGLE", "ESCAPED", "COMMENTED", "URL", "SPACED")

CASES = {
    "Procfile only": (PROCFILE, "", (), ()),
    ".env with PORT": (PROCFILE, DOTENV + "PORT=7000\n", (), ()),
    "concurrency": (PROCFILE, DOTENV, ("-c", "web=2,clock=3"), ("-m", "web=2,clock=3")),
    "-p": (PROCFILE, DOTENV, ("-p", "6000"), ("-p", "6000")),
    "prose and odd lines": (
        "This app runs three processes.\n" + PROCFILE.replace("clock:", "- clock:") + "\n",
        DOTENV,
        (),
        (),
    ),
}


def run_honcho(folder: Path, out: Path, args: tuple[str, ...]) -> None:
    env = cli_env()
    env["OUT"] = str(out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: proc.poll() is not None or _written(out), timeout=20)
        assert proc.poll() is None, "honcho ended early"
        _settle(out)
    finally:
        proc.send_signal(signal.SIGTERM)  # honcho stops its processes and exits
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_lacrimosa(folder: Path, out: Path, args: tuple[str, ...]) -> None:
    (folder / ".env").touch()
    with (folder / ".env").open("a") as dotenv:
        dotenv.write(f"\nOUT={out}\n")
    with headless(folder, *args):
        wait_until(lambda: _written(out), timeout=20)
        _settle(out)


def _written(out: Path) -> bool:
    return any(out.iterdir())


def _settle(out: Path) -> None:
    """Wait until the number of files stops changing and each holds whole JSON."""
    seen: list[int] = []

    def steady() -> bool:
        seen.append(len(list(out.iterdir())))
        return (
            len(seen) >= 10
            and len(set(seen[-10:])) == 1
            and all(load_json_or_none(p) for p in out.iterdir())
        )

    wait_until(steady, timeout=15, interval=0.05)


def seen_by_children(out: Path) -> dict[str, dict[str, str | None]]:
    """Per instance, PORT and the .env's variables as the child saw them."""
    found = {}
    for path in sorted(out.iterdir()):
        environment = load_json_or_none(path)
        assert environment is not None
        found[path.stem] = {name: environment.get(name) for name in ("PORT", *CUSTOM)}
    return found


@pytest.mark.parametrize(
    "procfile, dotenv, honcho_args, lacrimosa_args", CASES.values(), ids=CASES.keys()
)
def test_children_see_what_they_see_under_honcho(
    tmp_path: Path,
    procfile: str,
    dotenv: str,
    honcho_args: tuple[str, ...],
    lacrimosa_args: tuple[str, ...],
) -> None:
    results = {}
    for tool, run, args in (
        ("honcho", run_honcho, honcho_args),
        ("lacrimosa", run_lacrimosa, lacrimosa_args),
    ):
        folder, out = tmp_path / tool, tmp_path / f"{tool}-out"
        folder.mkdir()
        out.mkdir()
        (folder / "Procfile").write_text(procfile)
        if dotenv:
            (folder / ".env").write_text(dotenv)
        run(folder, out, args)
        results[tool] = seen_by_children(out)
    assert results["lacrimosa"] == results["honcho"]
    assert results["honcho"]  # the children ran and wrote
