"""The project's own checks run with the tests, so one command runs them all (ruff, mypy)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."]],
    ids=["ruff-check", "ruff-format"],
)
def test_checks_pass(command: list[str]) -> None:
    result = subprocess.run(
        [_tool(command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def run_mypy(tree: Path) -> subprocess.CompletedProcess[str]:
    """mypy (strict, from pyproject.toml) on engine/ and api/ as the installed package sees them.

    mypy names modules after folders and cannot follow setuptools' mapping of engine/ to
    lacrimosa.engine, so it runs on ``tree/lacrimosa/{engine,api,tui}``: links to the real folders.
    """
    package = tree / "lacrimosa"
    package.mkdir(parents=True, exist_ok=True)
    for folder in ("engine", "api", "tui"):
        link = package / folder
        if not link.exists():
            link.symlink_to(REPO / folder, target_is_directory=True)
    command = [_tool("mypy"), "--config-file", str(REPO / "pyproject.toml")]
    command += ["-p", "lacrimosa.engine", "-p", "lacrimosa.api"]
    return subprocess.run(command, cwd=tree, capture_output=True, text=True, timeout=300)


def test_mypy_passes(tmp_path: Path) -> None:
    result = run_mypy(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # It really checked the project's files (a tree it could not read would check nothing).
    assert "no issues found in" in result.stdout
    checked = int(result.stdout.split("no issues found in ")[1].split()[0])
    expected = len(list(REPO.glob("engine/**/*.py"))) + len(list(REPO.glob("api/*.py")))
    assert checked >= expected
