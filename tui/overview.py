"""The Overview view (key 2): the sequencer and its journal at a glance, and a process summary.

Refreshed from the app's 20 Hz poll while it is shown, and only when something it shows changed:
the sequencer's stats and the journal's bounds are compared with what is on screen (a few
microseconds), at most 4 times a second (under a flood they change at every poll, and counters
redrawn faster than that are not read: a frame each cost the UI thread ~4 ms beside the busy
ingest process, bench/tui_events.py); the process summary is redrawn at most twice a second.

When the console has no sequencer, the view says how to start one and how to send an event.

The keys go to :class:`KeysHere`, a line of no height at the top, not to the view itself: the view
still scrolls with them (its bindings are on the focus's chain), and moving the focus in or out
restyles that one widget, not each part of the view (~2.5 ms of each switch to or from it).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from ..engine.events.ingest_stats import RATE_HISTORY
from ..engine.events.sequencer import DROP_CAUSES, SequencerStats
from ..engine.facade import ConsoleFacade, SequencerView
from ..engine.processes.supervisor import State
from .line_memo import RemembersItsLines
from .palette import ERROR, GOOD, WARNING
from .process_table import format_count
from .sparkline import RateSparkline
from .text_lines import TextLines

LABEL_WIDTH = 11
BAR_WIDTH = 20
PROCESS_REFRESH_INTERVAL = 0.5
SEQUENCER_REFRESH_INTERVAL = 0.25
EXAMPLE_ADDRESS = "127.0.0.1:9000"
_EIGHTHS = " ▏▎▍▌▋▊▉"


def send_command(address: str) -> str:
    """The shell command that sends one plain-text event to ``address`` ("HOST:PORT")."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f'echo "deploy started" | nc -u -w1 {host} {port}'


def how_to_enable() -> Text:
    """What to do to receive events, for a console without a sequencer."""
    out = Text()
    out.append("No event sequencer in this console.\n\n", style="bold")
    out.append("To receive events, add to lacrimosa.toml:\n\n")
    out.append(f'    [sequencer]\n    udp = "{EXAMPLE_ADDRESS}"\n\n', style="bold")
    out.append("or start the console with:\n\n")
    out.append(f"    lacrimosa up --udp {EXAMPLE_ADDRESS}\n\n", style="bold")
    out.append("then send an event:\n\n")
    out.append(f"    {send_command(EXAMPLE_ADDRESS)}\n", style="bold")
    return out


def format_bytes(size: float) -> str:
    """1023 B, 1.5 KiB, 12 MiB, 1.0 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            if unit == "B":
                return f"{size:.0f} B"
            return f"{size:.1f} {unit}" if size < 9.95 else f"{size:.0f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def usage_bar(fraction: float, width: int = BAR_WIDTH) -> Text:
    """A bar ``width`` cells wide, filled to ``fraction`` (0..1) in eighths of a cell."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    bar = Text(no_wrap=True, end="")
    bar.append("█" * full, style=GOOD)
    if full < width:
        bar.append(_EIGHTHS[part], style=f"{GOOD} on grey23")
        bar.append(" " * (width - full - 1), style="on grey23")
    return bar


def _line(out: Text, label: str, *parts: str | Text) -> None:
    if out:
        out.append("\n")
    out.append(label.ljust(LABEL_WIDTH), style="bold")
    for part in parts:
        out.append_text(part if isinstance(part, Text) else Text(part))


def _count(value: int, what: str) -> Text:
    return Text(f"{what} {value:,}", style=f"bold {ERROR}" if value else "")


class KeysHere(Widget, can_focus=True):
    """Where the Overview's keys arrive (see the module docstring)."""

    DEFAULT_CSS = "KeysHere { height: 0; }"


class OverviewView(RemembersItsLines, VerticalScroll, can_focus=False):
    """The sequencer, its journal and the processes, summarised; see the module docstring."""

    DEFAULT_CSS = """
    OverviewView {
        padding: 0 1;
        scrollbar-size-vertical: 1;
        & > Static, & > TextLines { width: 1fr; }
        #overview-rate { height: 2; }
        #overview-rate-label { width: 11; }
        #overview-sparkline { height: 2; width: 1fr; }
        #overview-sparkline > .sparkline--max-color { color: #87d75f; }
        #overview-sparkline > .sparkline--min-color { color: #87d75f 30%; }
    }
    """

    def __init__(self, console: ConsoleFacade, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._engine = console
        self._shown_key: object = None
        self._processes_at = 0.0
        self._sequencer_at = 0.0
        self._processes_shown: tuple[int, int, int, int, str] | None = None

    def compose(self) -> ComposeResult:
        yield KeysHere()
        yield Static(how_to_enable(), id="overview-hint")
        yield TextLines(id="overview-ingest")
        with Horizontal(id="overview-rate"):
            yield Static(Text("events/s\nlast 2 min", style="dim"), id="overview-rate-label")
            yield RateSparkline([0] * RATE_HISTORY, id="overview-sparkline")
        yield TextLines(id="overview-journal")
        yield TextLines(id="overview-processes")

    def on_mount(self) -> None:
        self.poll(force=True)

    def focus_default(self) -> None:
        self.query_one(KeysHere).focus()

    def poll(self, force: bool = False) -> None:
        """Redraw what changed since the last call (everything if ``force``)."""
        sequencer = self._engine.sequencer
        now = time.monotonic()
        if force or now - self._processes_at >= PROCESS_REFRESH_INTERVAL:
            self._processes_at = now
            self._show_processes()
        if sequencer is None:
            if force or self._shown_key is not None:
                self._shown_key = None
                self._show_sequencer_parts(False)
            return
        if not force and now - self._sequencer_at < SEQUENCER_REFRESH_INTERVAL:
            return
        stats = sequencer.stats()
        key = (
            stats,
            sequencer.journal.bounds(),
            sequencer.failure is not None,
            sequencer.ingest_errors,
            sequencer.restarts,
            sequencer.state,
        )
        if not force and key == self._shown_key:
            return
        self._shown_key = key
        self._sequencer_at = now
        self._show_sequencer_parts(True)
        self._show_sequencer(sequencer, stats)

    def _update_part(self, selector: str, text: Text) -> None:
        """Show ``text`` in the part ``selector``, a row per line (TextLines: no wrapping, and a
        layout only when its number of lines changes)."""
        self.query_one(selector, TextLines).update(text)

    def _show_sequencer_parts(self, shown: bool) -> None:
        self.query_one("#overview-hint").display = not shown
        for part in ("#overview-ingest", "#overview-rate", "#overview-journal"):
            self.query_one(part).display = shown

    def _show_sequencer(self, sequencer: SequencerView, stats: SequencerStats) -> None:
        status = sequencer.status()
        journal = status["journal"]

        ingest = Text(no_wrap=True, overflow="ellipsis")
        # Linux reports twice the size asked for (half is its bookkeeping): show the data's half.
        buffer = format_bytes(status["rcvbuf"] // 2) + " for data"
        if not status["rcvbuf_forced"]:
            buffer += " (capped by net.core.rmem_max)"
        _line(ingest, "sequencer", f"udp {status['udp']} · {status['backend']}")
        process = status["ingest"]
        pid = f" · ingest pid {process['pid']}" if process.get("pid") else ""
        _line(ingest, "", f"receive buffer {buffer}{pid}")
        if status["backend_note"]:
            _line(ingest, "", Text(str(status["backend_note"]), style="dim"))
        if process["restarts"] or process["state"] != "running":
            restarts = process["restarts"]
            text = f"ingest process {process['state']}, restarted {restarts:,}x"
            if process["last_restart"] is not None:
                text += f" (last: {sequencer.history[-1].describe()})"
            _line(ingest, "", Text(text, style=f"bold {WARNING}"))
        if "failure" in status:
            _line(ingest, "", Text(f"stopped: {status['failure']}", style=f"bold {ERROR}"))
        elif status["ingest_errors"]:
            lost = (
                f"{status['lost']:,} datagrams lost in {status['ingest_errors']:,} failed batches"
            )
            _line(ingest, "", Text(f"{lost}: {status['last_error']}", style=f"bold {ERROR}"))
        peak = max(stats.history, default=0)
        _line(
            ingest,
            "ingest",
            Text(f"{format_count(stats.rate)} events/s", style="bold"),
            f" now · peak {format_count(peak)}/s",
        )
        _line(
            ingest,
            "",
            f"{stats.accepted:,} accepted of {stats.received:,} received "
            f"({stats.text:,} text, {stats.framed:,} framed)",
        )
        self._update_part("#overview-ingest", ingest)

        history = list(stats.history)
        padded = [0] * (RATE_HISTORY - len(history)) + history[-RATE_HISTORY:]
        self.query_one("#overview-sparkline", RateSparkline).data = padded

        out = Text(no_wrap=True, overflow="ellipsis")
        capacity, blob_bytes = journal["capacity"], journal["blob_bytes"]
        ring, blob = sequencer.journal.utilisation()  # status() rounds them to 4 places
        _line(
            out,
            "ring",
            usage_bar(ring),
            f" {ring:6.1%}  {journal['events']:,} of {capacity:,} slots",
        )
        _line(
            out,
            "blob",
            usage_bar(blob),
            f" {blob:6.1%}  {format_bytes(blob * blob_bytes)} of {format_bytes(blob_bytes)}",
        )
        events = journal["events"]
        _line(
            out,
            "held",
            f"{events:,} events · first seq {journal['first_seq']:,}"
            f" · next seq {journal['next_seq']:,}",
        )
        drops = stats.drops
        parts: list[str | Text] = []
        for cause in DROP_CAUSES:
            if parts:
                parts.append(" · ")
            parts.append(_count(drops.get(cause, 0), cause.replace("_", " ")))
        _line(out, "drops", *parts)
        ignored = stats.clock_ignored
        _line(
            out,
            "clock",
            Text(
                f"{ignored:,} sender clocks ignored (too far ahead)",
                style=WARNING if ignored else "",
            ),
        )
        _line(out, "journal", journal["path"])
        _line(out, "", Text(journal["opened"], style="dim"))
        self._update_part("#overview-journal", out)

    def _show_processes(self) -> None:
        infos = self._engine.processes()
        running = sum(1 for info in infos if info.state == State.RUNNING)
        failed = sum(1 for info in infos if info.state == State.FAILED)
        looping = sum(1 for info in infos if info.state == State.CRASH_LOOP)
        rate = format_count(sum(info.lines_per_second for info in infos))
        shown = (running, len(infos), failed, looping, rate)
        if shown == self._processes_shown:
            return
        self._processes_shown = shown
        out = Text(no_wrap=True, overflow="ellipsis")
        _line(
            out,
            "processes",
            Text(f"{running} running", style=f"bold {GOOD}" if running else "bold"),
            f" of {len(infos)} · {rate} lines/s",
        )
        # A crash-looping process is not failed: it is restarted again and again.
        if looping:
            out.append_text(Text(f" · {looping} crash-looping", style=f"bold {ERROR}"))
        if failed:
            out.append_text(Text(f" · {failed} failed", style=f"bold {ERROR}"))
        self._update_part("#overview-processes", out)
