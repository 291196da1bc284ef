"""Shared fixtures. Add to this file; do not change what is here without telling its users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import write_config

from engine.config import load_config
from engine.console import Console


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Callable[..., Console]]:
    """A factory: ``console(text, name="lacrimosa.toml", start=True)`` → a Console.

    The config is written under ``tmp_path`` (so relative ``cwd`` values land there) and the state
    folder is ``tmp_path / ".lacrimosa"``. Every console made is shut down after the test, whatever
    happened in it.
    """
    made: list[Console] = []

    def make(text: str, name: str = "lacrimosa.toml", start: bool = True) -> Console:
        path = write_config(tmp_path, text, name)
        made.append(Console(load_config(path), tmp_path / ".lacrimosa"))
        if start:
            made[-1].start()
        return made[-1]

    yield make
    for instance in reversed(made):
        instance.shutdown()
