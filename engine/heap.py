"""Short full passes of the cyclic garbage collector in a long-running process.

A full collection walks every object the collector tracks, holding the interpreter lock: every
thread of the console (the supervisor's loop taking in output, the control server, the TUI's
event loop) waits meanwhile. Most of those objects are a process's startup objects (modules,
classes, functions, the TUI's widgets and styles), alive until it exits, walked again at every
full pass for nothing. Measured in the TUI's process (bench/tui_events.py): a full pass took ~50
ms and came about twice every 5 s; with the startup objects frozen, 1-7 ms, and the Events view's
key-to-frame p95 during an event flood went from ~105 to ~78 ms (30 ms with nothing arriving,
from ~75).
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
