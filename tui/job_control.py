"""Stopping and continuing the TUI (SIGTSTP, SIGCONT), made safe against a stray SIGCONT."""

from __future__ import annotations

import signal
from types import FrameType


def resume_only_after_a_stop() -> None:
    """Let Textual's SIGCONT handler run only when a SIGTSTP stopped the app first.

    Textual's terminal driver leaves application mode on SIGTSTP and enters it again on every
    SIGCONT. But a SIGCONT also comes when nothing was stopped: the kernel sends one with the
    SIGHUP of a terminal that hangs up, and anyone may ``kill -CONT`` a running process. Entering
    application mode again while in it starts a second output thread beside the first, and a
    shutdown under way then waits forever on an output queue no thread reads (1 hang-up in ~15
    hung this way). Where Textual installed no handlers (a headless app), this does nothing."""
    on_stop = signal.getsignal(signal.SIGTSTP)
    on_continue = signal.getsignal(signal.SIGCONT)
    if not (callable(on_stop) and callable(on_continue)):
        return
    stopped = False

    def stopping(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped
        stopped = True  # first: the process stops inside Textual's handler
        on_stop(signum, frame)

    def continuing(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped
        if stopped:
            stopped = False
            on_continue(signum, frame)

    signal.signal(signal.SIGTSTP, stopping)
    signal.signal(signal.SIGCONT, continuing)
