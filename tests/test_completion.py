"""``lacrimosa completion bash|zsh|fish``: scripts from the parser, tried in a real bash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import wait_until
from test_procenv import headless

CLI = [sys.executable, "-m", "lacrimosa.api.cli"]
REPO = Path(__file__).resolve().parent.parent


def env_with_command(tmp_path: Path) -> dict[str, str]:
    """An environment where ``lacrimosa`` on PATH runs this checkout's CLI (the completion
    script calls it for process names)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    command = bin_dir / "lacrimosa"
    command.write_text(f'#!/bin/sh\nexec {sys.executable} -m lacrimosa.api.cli "$@"\n')
    command.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "LACRIMOSA_HOME"}
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    return env


def script(shell: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [*CLI, "completion", shell], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def bash_complete(tmp_path: Path, env: dict[str, str], line: str) -> list[str]:
    """What bash completes for ``line`` (the word being typed is its last word)."""
    completion = tmp_path / "lacrimosa.bash"
    completion.write_text(script("bash", env))
    words = line.split(" ")
    probe = f"""
source {completion}
COMP_WORDS=({" ".join(repr(w) for w in words)})
COMP_CWORD={len(words) - 1}
COMP_LINE={line!r}
COMP_POINT={len(line)}
_shtab_lacrimosa
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(
        ["bash", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return [word for word in done.stdout.splitlines() if word]


def test_bash_completes_verbs_options_and_the_running_consoles_process_names(
    tmp_path: Path,
) -> None:
    env = env_with_command(tmp_path)
    assert bash_complete(tmp_path, env, "lacrimosa res") == ["restart"]
    assert "--exit-with" in bash_complete(tmp_path, env, "lacrimosa up --exit")
    assert bash_complete(tmp_path, env, "lacrimosa logs --time") == ["--timestamps"]
    (tmp_path / "lacrimosa.toml").write_text(
        '[processes.web]\ncmd = "sleep 300"\n\n[processes.worker]\ncmd = "sleep 300"\n'
    )
    with headless(tmp_path):
        wait_until(
            lambda: bash_complete(tmp_path, env, "lacrimosa restart w") == ["web", "worker"],
            timeout=20,
            message="the process names",
        )
        assert bash_complete(tmp_path, env, "lacrimosa up --exit-with wor") == ["worker"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_every_verb_and_parse(tmp_path: Path, shell: str) -> None:
    text = script(shell, env_with_command(tmp_path))
    for verb in ("up", "ps", "logs", "restart", "shutdown", "completion"):
        assert verb in text
    assert "exit-when-done" in text and "lacrimosa ps" in text
    if shutil.which(shell) is None:
        return  # not installed here: the content is all that can be checked
    checked = subprocess.run(
        [shell, "-n", "-c", text], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stderr


def test_an_unknown_shell_is_a_usage_error_and_the_one_shot_path_never_loads_shtab() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [*CLI, "completion", "powershell7"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and "invalid choice" in done.stderr
    probe = (
        "import sys; from lacrimosa.api import cli; cli.build_parser(); "
        "assert 'shtab' not in sys.modules, 'shtab loaded'"
    )
    assert subprocess.run([sys.executable, "-c", probe], env=env, timeout=30).returncode == 0
