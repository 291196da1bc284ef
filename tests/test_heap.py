"""engine/heap.py: a program's long-lived objects are frozen out of the collector's full passes."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_settle_leaves_the_collector_only_the_objects_made_afterwards() -> None:
    # In a process of its own: freezing this test process's objects would keep its garbage.
    script = textwrap.dedent("""
        import gc
        import lacrimosa.tui.app
        from lacrimosa.engine import heap

        before = len(gc.get_objects())
        heap.settle()
        made_after = [{"n": i} for i in range(100)]
        print(before, gc.get_freeze_count(), len(gc.get_objects()))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    before, frozen, walked = (int(n) for n in out.split())
    assert before > 10_000  # the TUI's modules alone
    assert frozen >= before - 1_000  # the garbage collected first is not frozen
    assert walked < 1_000  # the 100 dicts and the little the interpreter made since
