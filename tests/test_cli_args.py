"""The one-shot CLI's own reading of the simplest command lines (``cli._fast_args``) gives what
argparse gives, and leaves everything else (help, abbreviations, usage errors) to argparse."""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lacrimosa.api.cli import _fast_args, build_parser

TOKENS = [
    *("ps", "status", "start", "stop", "restart", "shutdown", "logs", "events", "up"),
    *("--json", "--home", "--home=h", "--home=", "-f", "--file", "--file=c.toml", "-fc.toml"),
    *("--js", "--ho", "-h", "--help", "--version", "--", "-x", "-1", "--raw", "-n", "5"),
    *("api", "web", "DIR", "", " ", "a b", "é", "\udcff", "--home=-x", "=", "-"),
]


def _argparse(argv: list[str]) -> dict[str, object] | None:
    """argparse's reading of ``argv``, or None when it stops (usage error, help, version)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return vars(build_parser().parse_args(argv))
        except SystemExit:
            return None


@pytest.mark.parametrize(
    "argv",
    [
        ["ps", "--json"],
        ["ps"],
        ["--home", "DIR", "ps", "--json"],
        ["ps", "--json", "--home=DIR", "-f", "c.toml"],
        ["--home", "A", "status", "--home", "B"],
        ["-f", "c.toml", "restart", "api", "--json"],
        ["start", "--json", "api"],
        ["shutdown", "--file", "c.toml"],
    ],
)
def test_the_simple_forms_are_read_as_argparse_reads_them(argv: list[str]) -> None:
    fast = _fast_args(argv)
    assert fast is not None
    assert vars(fast) == _argparse(argv)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["ps", "-h"],
        ["--version"],
        ["ps", "--js"],
        ["start"],
        ["start", "a", "b"],
        ["ps", "--home"],
        ["ps", "--home", "-x"],
        ["logs", "api"],
        ["ps", "extra"],
        ["--json", "ps"],
        ["start", "\udcff"],
    ],
)
def test_the_rest_goes_to_argparse(argv: list[str]) -> None:
    assert _fast_args(argv) is None


@settings(max_examples=2000)
@given(st.lists(st.sampled_from(TOKENS), max_size=7))
def test_whatever_is_read_fast_argparse_reads_the_same(argv: list[str]) -> None:
    fast = _fast_args(argv)
    if fast is not None:
        assert vars(fast) == _argparse(argv)
