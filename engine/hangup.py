"""When the terminal hangs up (SSH dropped, its window closed): let go of it."""

from __future__ import annotations

import contextlib
import os


def let_go_of_the_terminal() -> None:
    """Point every standard stream that was on the terminal at /dev/null, so that what is still
    written on the way out (a TUI restoring the screen, a last report) goes nowhere instead of
    failing or blocking."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            with contextlib.suppress(OSError):
                if os.isatty(fd):
                    os.dup2(null, fd)
        os.close(null)
