"""When the terminal hangs up (SSH dropped, its window closed): let go of it."""

from __future__ import annotations

import contextlib
import os
import stat


def let_go_of_the_terminal() -> None:
    """Point every standard stream that was on the terminal at /dev/null, so that what is still
    written on the way out (a TUI restoring the screen, a last report) goes nowhere instead of
    failing or blocking.

    A stream counts as on the terminal when it is a character device: once the terminal has hung
    up, ``isatty`` says no (its ioctls fail with EIO), and the other character devices a standard
    stream may be (/dev/null itself) lose nothing by the change. Pipes and files are left alone."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            with contextlib.suppress(OSError):
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    os.dup2(null, fd)
        os.close(null)
