"""Both ways to get the ``lacrimosa`` command: the ./lacrimosa launcher and ``pip install .``.

These build real virtual environments (dependencies come from the package index or pip's cache),
so they are the slowest tests; one environment serves both paths.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import wait_until

REPO = Path(__file__).resolve().parent.parent


def _copy_project(dest: Path) -> Path:
    """The project's tracked files, as a fresh clone would have them."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        if not name or not (REPO / name).exists():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return dest


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LACRIMOSA_HOME", "VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(extra)
    return env


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to list the project's files")
def test_launcher_sets_up_once_then_runs_the_cli_and_pip_install_works(tmp_path: Path) -> None:
    project = _copy_project(tmp_path / "checkout")
    venv = tmp_path / "venv"
    env = _env(LACRIMOSA_VENV=str(venv), LACRIMOSA_PYTHON=sys.executable)
    launcher = project / "lacrimosa"
    outside = tmp_path / "somewhere-else"
    outside.mkdir()

    first = subprocess.run(
        [str(launcher), "ps"], cwd=outside, env=env, capture_output=True, text=True, timeout=600
    )
    assert "setting up" in first.stderr
    assert first.returncode == 4  # no project here: "no console running"
    assert (venv / "bin" / "lacrimosa").exists()
    # It built the log store's C newline scan beside its source, and took setuptools away again.
    assert list((project / "engine" / "logs").glob("_newlines.*.so")), first.stderr
    assert not list(venv.glob("lib/python*/site-packages/setuptools"))

    second = subprocess.run(
        [str(launcher), "--help"], cwd=outside, env=env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 0 and "setting up" not in second.stderr
    assert "logs" in second.stdout and "restart" in second.stdout

    # The launcher brings up a real console on the demo config and the CLI reaches it.
    demo = project / "demo"
    up = subprocess.Popen(
        [str(launcher), "up", "--headless", "--udp", "127.0.0.1:0"],  # 9000 may be taken
        cwd=demo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def ps_ok() -> bool:
            return (
                subprocess.run(
                    [str(launcher), "ps"], cwd=demo, env=env, capture_output=True, timeout=30
                ).returncode
                == 0
            )

        wait_until(ps_ok, timeout=30)
        listing = subprocess.run(
            [str(launcher), "ps"], cwd=demo, env=env, capture_output=True, text=True, timeout=30
        ).stdout
        assert {"api", "worker", "flaky", "clock", "deployer"} <= {
            row.split()[0] for row in listing.splitlines()[1:]
        }

        def deploy_events() -> bool:  # the demo's deployer sends events to the sequencer
            return (
                "v1.1 pull"
                in subprocess.run(
                    [str(launcher), "events"], cwd=demo, env=env, capture_output=True, text=True
                ).stdout
            )

        wait_until(deploy_events, timeout=30)
    finally:
        subprocess.run(
            [str(launcher), "shutdown"], cwd=demo, env=env, capture_output=True, timeout=30
        )
        assert up.wait(30) == 0
        up.communicate()

    # `pip install .` (not editable) into the same environment provides the command too, and it
    # runs from the installed package, not from the source folder.
    pip = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(project),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr
    shutil.rmtree(project)
    installed = subprocess.run(
        [str(venv / "bin" / "lacrimosa"), "ps"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert installed.returncode == 4 and "no lacrimosa.toml or Procfile in" in installed.stderr
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import lacrimosa.engine.logs._newlines as scan; print(scan.__file__)",
        ],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert str(venv) in where.stdout, where.stderr  # with the C scan, built by pip
    # The project adds exactly one import name: a user's own `api` or `engine` is never shadowed.
    assert installed_top_level_names(venv) == {"lacrimosa"}
    version = subprocess.run(
        [str(venv / "bin" / "lacrimosa"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("lacrimosa ")


def installed_top_level_names(venv: Path) -> set[str]:
    """The import names the lacrimosa distribution installed, from its RECORD."""
    code = (
        "import importlib.metadata as m\n"
        "files = m.distribution('lacrimosa').files or []\n"
        "names = {f.parts[0].removesuffix('.py') for f in files if f.suffix == '.py' or len(f.parts) > 1}\n"
        "print('\\n'.join(sorted(n for n in names if not n.endswith(('.dist-info', '.data')) and n != '..')))\n"
    )
    listed = subprocess.run(  # not in the checkout: its lacrimosa.egg-info would be found first
        [str(venv / "bin" / "python"), "-c", code],
        cwd=venv,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    return set(listed.stdout.split())
