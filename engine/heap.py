"""Short full passes of the cyclic garbage collector in a long-running process, at a good time.

A full collection walks every object the collector tracks, holding the interpreter lock: every
thread of the console (the supervisor's loop taking in output, the control server, the TUI's
event loop) waits meanwhile. Most of those objects are a process's startup objects (modules,
classes, functions, the TUI's widgets and styles), alive until it exits, walked again at every
full pass for nothing. Measured in the TUI's process (bench/tui_events.py): a full pass took ~50
ms and came about twice every 5 s; with the startup objects frozen (:func:`settle`), 1-7 ms, and
the Events view's key-to-frame p95 during an event flood went from ~105 to ~78 ms (30 ms with
nothing arriving, from ~75).

Under an event flood what is left still costs 15-30 ms of the UI thread's time (the rows and
strips the TUI keeps for a while), about every 5 s. The collector starts a full pass when enough
new objects were allocated, and the largest bursts of allocation are the frames a key asks for (a
view switch lays out and draws the whole screen): the pass nearly always ran in the middle of a
key's work, which then came to the screen 25 to 60 ms late. So the TUI runs the pass itself
(:func:`full_pass_due`, :func:`full_pass_if_due`), from its poll, once the collector is three
quarters of the way to starting one of its own: between frames, not inside one. A process whose
TUI is gone (detached, or never started) keeps the collector's own schedule, which this does not
change.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what is garbage now, then move every object alive to the collector's permanent
    generation (``gc.freeze``), which no later pass walks. For a program's entry points, once
    the long-lived objects exist: an object frozen here that later becomes garbage in a cycle is
    never collected (what is freed by reference counting still is), so a library or a test
    process that makes and drops consoles must not call it."""
    gc.collect()
    gc.freeze()


def full_pass_due() -> bool:
    """Whether the collector is at least three quarters of the way to a full pass of its own:
    it starts one when the passes over the younger objects since the last full pass exceed its
    threshold (and enough of those objects survived; that part cannot be read from Python)."""
    passes = gc.get_count()[2]
    threshold = gc.get_threshold()[2]
    return gc.isenabled() and threshold > 0 and passes * 4 >= threshold * 3


def full_pass_if_due() -> None:
    """A full collection now if one is due (which starts the collector's count towards the next
    one again); if it is no longer due, an earlier call ran it."""
    if full_pass_due():
        gc.collect()
