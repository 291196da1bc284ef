"""engine/heap.py: a program's long-lived objects are frozen out of the collector's full passes,
and the TUI runs the passes between its frames."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import time

from helpers import wait_for

from lacrimosa.engine import heap

IDLE = """
[processes.idle]
cmd = "sleep 600"
stop_timeout = 2
"""


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


def test_a_full_pass_is_due_three_quarters_of_the_way_to_the_collectors_own() -> None:
    threshold = gc.get_threshold()
    try:
        gc.set_threshold(threshold[0], threshold[1], 8)
        gc.collect()  # every count starts again
        assert not heap.full_pass_due()
        for _ in range(5):  # each pass over the middle generation counts towards a full one
            gc.collect(1)
        assert not heap.full_pass_due()  # 5 of 8
        gc.collect(1)
        assert heap.full_pass_due()  # 6 of 8
        gc.disable()
        assert not heap.full_pass_due()  # a program that turned the collector off keeps it so
        gc.enable()
        heap.full_pass_if_due()
        assert gc.get_count()[2] == 0 and not heap.full_pass_due()
    finally:
        gc.enable()
        gc.set_threshold(*threshold)


async def test_the_tui_runs_a_due_full_pass_from_its_poll(console) -> None:
    """Between frames, before the collector would start it in the middle of one."""
    from lacrimosa.tui import LacrimosaApp

    full_passes: list[float] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full_passes.append(time.monotonic())

    threshold = gc.get_threshold()
    gc.callbacks.append(note)
    try:
        gc.set_threshold(threshold[0], threshold[1], 1000)  # the collector's own: far off
        app = LacrimosaApp(console(IDLE))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.3)
            full_passes.clear()
            for _ in range(750):  # three quarters of the way
                gc.collect(1)
            assert heap.full_pass_due()
            await wait_for(pilot, lambda: bool(full_passes), "a full pass")
            assert not heap.full_pass_due()
    finally:
        gc.callbacks.remove(note)
        gc.set_threshold(*threshold)
