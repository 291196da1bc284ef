"""The import contract (STYLE.md, habit 1), checked in fresh interpreters.

- engine/ never imports textual, rich, typer or an HTTP framework;
- the one-shot CLI (lacrimosa.api.cli) loads neither textual nor numpy: every `lacrimosa ps` pays for them;
  nor, on its way to a `ps --json`, any of the standard library's heavier modules (HEAVY_FOR_ONE_SHOT:
  argparse, json, re, enum, socket, pathlib, typing, …; tests/test_cli.py checks a real call too);
- api/ never imports tui/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HEAVY_FOR_ONE_SHOT, bare_python

REPO = Path(__file__).resolve().parent.parent
ENGINE_MODULES = sorted(
    "lacrimosa.engine." + ".".join(p.relative_to(REPO / "engine").with_suffix("").parts)
    for p in (REPO / "engine").rglob("*.py")
    if p.stem != "__init__"
)
API_MODULES = sorted(
    f"lacrimosa.api.{p.stem}" for p in (REPO / "api").glob("*.py") if p.stem != "__init__"
)
NOT_IN_ENGINE = ("textual", "rich", "typer", "starlette", "uvicorn", "fastapi", "aiohttp")

_PROBE = """
import importlib, importlib.util, json, sys
name = sys.argv[1]
if importlib.util.find_spec(name) is None:
    print(json.dumps(None))
else:
    importlib.import_module(name)
    # lacrimosa's own subpackages count as top-level names here: "lacrimosa.tui" → "tui".
    print(json.dumps(sorted({m.removeprefix("lacrimosa.").split(".")[0] for m in sys.modules})))
"""


def loaded_after_import(module: str) -> set[str] | None:
    """Top-level packages in sys.modules after importing ``module`` alone; None if it is absent."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, module], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    return None if found is None else set(found)


def test_the_probe_sees_what_a_module_loads() -> None:
    # The check below is only worth something if it would notice a heavy import.
    assert "numpy" in (loaded_after_import("lacrimosa.engine.logs.store") or set())
    assert "json" in (loaded_after_import("json") or set())


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_engine_modules_import_no_ui_or_http_framework(module: str) -> None:
    loaded = loaded_after_import(module)
    assert loaded is not None
    assert sorted(loaded & set(NOT_IN_ENGINE)) == []


def test_the_one_shot_cli_loads_neither_textual_nor_numpy() -> None:
    loaded = loaded_after_import("lacrimosa.api.cli")
    assert loaded is not None
    assert sorted(loaded & {"textual", "numpy"}) == []


_ONE_SHOT_PROBE = """
import sys
from lacrimosa.api import client, wire
from lacrimosa.api.cli import _fast_args, json_text
args = _fast_args(["--home", "DIR", "ps", "--json"])
assert args is not None and args.json
wire.encode({"op": "ps"})
reply = client.loads(b'{"ok": true, "result": {"processes": [{"name": "a", "exit_code": -9}]}}')
json_text(reply["result"], indent=2)
print("\\n".join(sorted(sys.modules)))
"""


def test_the_one_shot_path_loads_no_heavy_module(tmp_path: Path) -> None:
    python, env = bare_python(tmp_path)
    result = subprocess.run(
        [*python, "-c", _ONE_SHOT_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "lacrimosa.api.client" in loaded  # the probe saw the modules
    assert sorted(loaded & set(HEAVY_FOR_ONE_SHOT)) == []


def test_the_probe_would_see_a_heavy_module(tmp_path: Path) -> None:
    python, env = bare_python(tmp_path)
    probe = _ONE_SHOT_PROBE.replace("import sys", "import sys, pathlib", 1)
    result = subprocess.run([*python, "-c", probe], env=env, capture_output=True, text=True)
    assert "pathlib" in result.stdout.split()


@pytest.mark.parametrize("module", API_MODULES)
def test_api_never_imports_the_tui(module: str) -> None:
    loaded = loaded_after_import(module)
    assert loaded is not None
    assert "tui" not in loaded
