"""The lacrimosa TUI: process table, live log view, live filter, one-key process control, the
sequencer's Overview and Events views, and the Audit view.

It reads a ``ConsoleFacade`` (engine/facade.py): the console itself, in its own process
(``lacrimosa up``), or a client of one over its socket (``lacrimosa tui``, ``attached``: then ``d``
detaches, ``q`` asks before stopping everything, and a hang-up detaches). It reads it only from
its own timer and workers:
a ~20 Hz timer polls ``console.version`` (a cheap tuple) and refreshes what changed, so however
fast processes write, the UI does a bounded amount of work per second and engine threads never
touch a widget (STYLE habit 3). Blocking engine calls (start/stop/restart, shutdown) run in thread
workers and report back with notifications.

Five views share the screen in a ContentSwitcher (``line_memo.ViewSwitcher``), switched with
``1`` (logs), ``2`` (Overview, tui/overview.py), ``3`` (Events, tui/events_view.py), ``4``
(Audit, tui/audit_view.py) and ``5`` (Query, tui/query_view.py); a hidden view keeps its state.
The log view's keys are the app's bindings, disabled (and left out of the footer) while another
view is shown; the other views carry their own. The poll refreshes the log view's data whichever
view is shown, and the other views only while shown.

The log view, top to bottom: the process table (as tall as the process list, at most a third of
the screen), a status line, the log view, the filter input (shown while filtering); the key footer
is below every view.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from collections.abc import Sequence

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static
from textual.worker import Worker, WorkerState

from ..engine import heap
from ..engine.audit import Actor
from ..engine.console import Console
from ..engine.errors import LacrimosaError
from ..engine.facade import ConsoleFacade
from ..engine.hangup import let_go_of_the_terminal
from ..engine.logs.query import LogQuery
from ..engine.logs.store import STDERR, STDOUT, STREAM_NAMES
from .audit_view import AuditView
from .events_view import EventsView
from .job_control import resume_only_after_a_stop
from .key_hints import KeyHints
from .line_detail import describe_line
from .line_memo import PlainScreen, PlainVertical, ViewSwitcher
from .log_pane import LogPane
from .overview import OverviewView
from .palette import ERROR, GOOD, NAME_COLOURS, WARNING
from .process_table import ALL_ROW, ProcessTable
from .query_view import QueryView
from .virtual_list import NEW_ROWS_INTERVAL

POLL_INTERVAL = 1 / 20  # how often console.version is checked
# Uptimes and rates move even when nothing else changes; the engine samples rates once a
# second, and each row rewritten costs a few hundred bytes on the terminal.
TABLE_REFRESH_INTERVAL = 1.0
LOG_RELOAD_INTERVAL = NEW_ROWS_INTERVAL  # new lines are shown at most this often
# ...and this often when they cannot be on screen (follow off, the end below the screen): only
# the line count in the status line and the scroll range change.
LOG_RELOAD_INTERVAL_HIDDEN = 1.0
TUI_USER = Actor.local("tui")  # who the TUI's actions are recorded as, in the audit log
STREAM_CYCLE = (None, STDOUT, STDERR)  # the `e` key: all streams, stdout only, stderr only
MAX_NAME_WIDTH = 12  # longer names are cut, so that the table fits in 80 columns
VIEWS = ("logs", "overview", "events", "audit", "query")
# Why an attached app ended (its return value): the console and its processes go on, except
# after CONSOLE_ENDED (stopped from elsewhere, or the connection to it was lost).
DETACHED, HUNG_UP, CONSOLE_ENDED = "detached", "hung up", "console ended"
VIEW_KEYS = Binding.Group("views", compact=True)
# The app's actions that act on the log view: only enabled while it is shown.
LOG_VIEW_ACTIONS = frozenset(
    {
        "restart_process",
        "stop_process",
        "start_process",
        "toggle_follow",
        "open_filter",
        "clear_filter",
        "cycle_stream",
        "toggle_timestamps",
        "show_all",
        "move_selection",
        "escape",
        "step_line",
        "log_page_up",
        "log_page_down",
        "log_home",
        "log_end",
        "toggle_line_detail",
    }
)


class FilterInput(Input):
    """The live filter; Escape clears it (and hides it), Enter goes back to the log."""

    BINDINGS = [Binding("escape", "app.clear_filter", "clear", show=False)]


class LacrimosaApp(App[str]):
    """The TUI of one running console."""

    TITLE = "lacrimosa"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #views {
        height: 1fr;
    }
    #processes {
        height: auto;
        max-height: 33%;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
    }
    #status {
        height: 1;
        background: $panel;
        color: $text;
    }
    #log {
        height: 1fr;
        min-height: 3;
    }
    /* Where the keys go, at a glance: the focused table's header is lit, like a title. */
    #processes:focus > .datatable--header {
        background: $accent 50%;
        color: $text;
    }
    #line-detail {
        display: none;
        height: 2fr;
        border-top: solid $primary;
        border-title-align: left;
        padding: 0 1;
        scrollbar-size-vertical: 1;
        &.-shown {
            display: block;
        }
    }
    #filter {
        display: none;
        height: 1;
        border: none;
        padding: 0 1;
        &.-shown {
            display: block;
        }
    }
    """

    BINDINGS = [
        Binding("r", "restart_process", "restart"),
        Binding("x", "stop_process", "stop"),
        Binding("s", "start_process", "start"),
        Binding("f", "toggle_follow", "follow"),
        Binding("slash", "open_filter", "filter"),
        Binding("e", "cycle_stream", "stream"),
        Binding("t", "toggle_timestamps", "time", show=False),  # the footer is full at 80 columns
        Binding("a", "show_all", "all"),
        Binding("d", "detach", "detach"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", show=False, priority=True),
        # Tab moves between processes wherever the focus is (also while typing a filter).
        Binding("tab", "move_selection(1)", show=False, priority=True),
        Binding("shift+tab", "move_selection(-1)", show=False, priority=True),
        Binding("escape", "escape", show=False),
        Binding("enter", "toggle_line_detail", show=False),
        Binding("shift+up", "step_line(-1)", show=False),
        Binding("shift+down", "step_line(1)", show=False),
        # One compact footer entry ("12345 views"): the log view's footer is nearly full at 80 columns.
        Binding("1", "show_view('logs')", "logs", group=VIEW_KEYS),
        Binding("2", "show_view('overview')", "overview", group=VIEW_KEYS),
        Binding("3", "show_view('events')", "events", group=VIEW_KEYS),
        Binding("4", "show_view('audit')", "audit", group=VIEW_KEYS),
        Binding("5", "show_view('query')", "query", group=VIEW_KEYS),
    ]

    def __init__(
        self,
        console: ConsoleFacade,
        notices: Sequence[str] = (),
        attached: bool = False,
        settle_heap: bool = False,
    ) -> None:
        """``notices``: said once, when the app is up (where a key was written). ``attached``:
        ``console`` runs elsewhere (``lacrimosa tui``): ``d`` detaches, ``q`` asks first, and a
        hang-up detaches; the app ends with a reason (``DETACHED``, ``HUNG_UP``,
        ``CONSOLE_ENDED``) as its return value. ``settle_heap``: once the first screen is drawn,
        the process's objects are frozen for the garbage collector (engine/heap.py); for the
        programs that run the app, not for tests that make many."""
        super().__init__()
        self._settle_heap = settle_heap
        self.engine = console  # the engine facade (App.console is rich's Console)
        self._notices = tuple(notices)
        self.attached = attached
        if attached:
            # The footer has room for one way out at 80 columns: attached, `d` (detach) is the
            # one shown; `q` still works (and asks first).
            self._bindings.key_to_bindings["q"] = [
                dataclasses.replace(binding, show=False)
                for binding in self._bindings.key_to_bindings["q"]
            ]
        self._asking_to_quit = False  # attached, after a first q: "detach or stop everything?"
        self.stop_refused: str | None = None  # attached: why the console refused to stop
        names = [info.name for info in console.processes()]
        self._name_colours = {
            name: NAME_COLOURS[i % len(NAME_COLOURS)] for i, name in enumerate(names)
        }
        self._name_width = min(max(len(n) for n in names), MAX_NAME_WIDTH)
        self._stream_index = 0
        self._filter_text = ""
        self._quitting = False
        self._seen_version: tuple[int, int] | None = None
        self._table_refreshed_at = 0.0
        self._log_version: int | None = None  # the lines' version the log pane was built at
        self._log_reloaded_at = 0.0
        self._status_shown: Text | None = None
        self._view = "logs"
        self._view_focus: dict[str, Widget | None] = {}  # what had the focus in a hidden view
        self._warnings_shown: set[str] = set()  # kinds of console warning already notified
        self._warnings_key: tuple[bool, int, int, int] | None = None

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with ViewSwitcher(initial="logs", id="views"):
            with PlainVertical(id="logs"):
                # At least as wide as the "* all" row's name.
                yield ProcessTable(
                    name_width=max(self._name_width, 5),
                    screen_width=self.size.width,
                    id="processes",
                )
                yield Static(id="status")
                yield LogPane(self.engine, self._name_colours, self._name_width, id="log")
                # Not focusable: the selection keys stay with the table; its keys are the app's.
                with VerticalScroll(id="line-detail", can_focus=False):
                    yield Static(id="line-detail-text")
                yield FilterInput(
                    placeholder='filter: text (smart case), or ?WHERE (?level = "error") · enter: done · esc: clear',
                    id="filter",
                )
            yield OverviewView(self.engine, id="overview")
            yield EventsView(self.engine, id="events")
            yield AuditView(self.engine, id="audit")
            yield QueryView(self.engine, id="query")
        yield KeyHints()

    @property
    def process_table(self) -> ProcessTable:
        return self.query_one("#processes", ProcessTable)

    @property
    def log_pane(self) -> LogPane:
        return self.query_one("#log", LogPane)

    @property
    def filter_input(self) -> FilterInput:
        return self.query_one("#filter", FilterInput)

    @property
    def line_detail(self) -> VerticalScroll:
        return self.query_one("#line-detail", VerticalScroll)

    @property
    def line_detail_shown(self) -> bool:
        return self.line_detail.has_class("-shown")

    @property
    def overview(self) -> OverviewView:
        return self.query_one("#overview", OverviewView)

    @property
    def events_view(self) -> EventsView:
        return self.query_one("#events", EventsView)

    @property
    def audit_view(self) -> AuditView:
        return self.query_one("#audit", AuditView)

    @property
    def query_view(self) -> QueryView:
        return self.query_one("#query", QueryView)

    @property
    def view(self) -> str:
        """The view shown: "logs", "overview", "events", "audit" or "query"."""
        return self._view

    def get_default_screen(self) -> PlainScreen:
        return PlainScreen(id="_default")

    def on_mount(self) -> None:
        resume_only_after_a_stop()
        if self.attached:
            # Losing the terminal detaches: the console and its processes go on.
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hung_up)
        self.process_table.show_processes(self.engine.processes())
        self.process_table.focus()
        self._apply_query()
        self.set_interval(POLL_INTERVAL, self._poll)
        if self._settle_heap:
            self.call_after_refresh(heap.settle)  # the widgets and styles exist now
        for notice in self._notices:
            self.notify(notice, timeout=30, markup=False)

    # -- reading the engine ------------------------------------------------------------------------

    def _poll(self) -> None:
        if not self.is_running:
            # Shutting down: the timer still fires while the screen's widgets are removed one
            # by one (any of them may be gone already).
            return
        pane = self.log_pane
        if self.engine.shutdown_requested.is_set() and not self._quitting:
            if self.attached:  # stopped from elsewhere, or the connection was lost
                self.exit(CONSOLE_ENDED)
                return
            self._begin_quit()  # `lacrimosa shutdown` from another terminal
        version = self.engine.version
        seen = self._seen_version
        now = time.monotonic()
        if self._log_version != version[1] and now - self._log_reloaded_at >= (
            LOG_RELOAD_INTERVAL if pane.new_lines_visible else LOG_RELOAD_INTERVAL_HIDDEN
        ):
            pane.reload()
            self._log_version = version[1]
            self._log_reloaded_at = now
        if (
            seen is None
            or version[0] != seen[0]
            or now - self._table_refreshed_at >= TABLE_REFRESH_INTERVAL
        ):
            self.process_table.show_processes(self.engine.processes())
            self._table_refreshed_at = now
        self._seen_version = version
        self._notify_warnings()
        self._poll_view()
        if heap.full_pass_due():
            # Once this poll's frame is drawn, before the collector starts the pass itself in
            # the middle of some frame (engine/heap.py).
            self.call_after_refresh(heap.full_pass_if_due)

    def _notify_warnings(self) -> None:
        """Console-level problems (Procfile lines skipped, a sequencer that stopped or lost
        events, a repaired journal, audit records not written): one notification each, the
        first time they are seen."""
        sequencer = self.engine.sequencer
        # The config's warnings never change: they are seen at the first look.
        key = (
            sequencer is not None and sequencer.failure is not None,
            sequencer.ingest_errors if sequencer is not None else 0,
            sequencer.restarts if sequencer is not None else 0,
            self.engine.audit.write_errors,
        )
        if key == self._warnings_key:
            return
        self._warnings_key = key
        for warning in self.engine.warnings():
            # Counts change as more is lost: notify again only for a new kind of problem (its
            # first words, counts left out: "3 audit records could not be written").
            kind = " ".join(word for word in warning.split()[:4] if not word[:1].isdigit())
            if kind not in self._warnings_shown:
                self._warnings_shown.add(kind)
                self.notify(warning, severity="error", timeout=30, markup=False)

    def _poll_view(self, force: bool = False) -> None:
        """Refresh the Overview, Events or Audit view if it is shown (each does nothing if
        nothing it shows changed)."""
        if self._quitting:
            return  # the journal is about to be closed
        if self._view == "overview":
            self.overview.poll(force)
        elif self._view == "events":
            self.events_view.poll(force)
        elif self._view == "audit":
            self.audit_view.poll()

    # -- views -----------------------------------------------------------------------------------

    def action_show_view(self, view: str) -> None:
        if view == self._view or view not in VIEWS:
            return
        self._view_focus[self._view] = self.focused
        self._view = view
        self.query_one("#views", ViewSwitcher).current = view
        focus = self._view_focus.get(view)
        if focus is not None and focus.is_attached and focus.display:
            focus.focus()
        elif view == "logs":
            self.process_table.focus()
        elif view == "overview":
            self.overview.focus_default()
        elif view == "audit":
            self.audit_view.focus_default()
        elif view == "query":
            self.query_view.focus_default()
        else:
            self.events_view.focus_default()
        self.refresh_bindings()
        self._poll_view(force=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # False: neither run nor shown in the footer.
        if action == "detach":
            return self.attached
        return not (action in LOG_VIEW_ACTIONS and self._view != "logs")

    @property
    def selected_process(self) -> str | None:
        """The process whose log is shown; None for the merged view of all processes."""
        return self.process_table.selected_process

    @property
    def stream(self) -> int | None:
        return STREAM_CYCLE[self._stream_index]

    def _apply_query(self) -> None:
        text = self._filter_text
        selected = self.selected_process
        # "?" and a WHERE expression of the query language (`?level = "error"`); else a substring.
        where = (text[1:].strip() or None) if text.startswith("?") else None
        contains = "" if text.startswith("?") else text
        self.log_pane.set_query(
            LogQuery(
                processes=None if selected is None else (selected,),
                stream=self.stream,
                contains=contains.encode("utf-8") if contains else None,
                # Smart case: an uppercase letter in the filter asks for an exact-case match.
                ignore_case=bool(contains) and contains == contains.lower(),
                where=where,
            )
        )
        self._update_status()

    def _update_status(self) -> None:
        pane = self.log_pane
        selected = self.selected_process
        status = Text(no_wrap=True, overflow="ellipsis")
        status.append(f" {selected or 'all processes'} ", style="bold reverse")
        if self._asking_to_quit and not self._quitting:
            status.append("  detach or stop everything? ", style=f"bold {WARNING}")
            status.append("d: detach · q: stop all · esc: stay", style="bold")
            self._show_status(status)
            return
        if self._quitting:
            status.append("  stopping processes…", style=f"bold {WARNING}")
            self._show_status(status)
            return
        stream = self.stream
        status.append("  stream: ")
        status.append(
            "all" if stream is None else STREAM_NAMES[stream],
            style=f"bold {ERROR}" if stream == STDERR else "bold",
        )
        status.append("  follow: ")
        if pane.follow:
            status.append("on", style=f"bold {GOOD}")
        else:
            status.append("off", style=f"bold {WARNING}")
        count = f"{pane.line_count:,}" if pane.is_current else "…"
        if self._filter_text:
            status.append("  filter: ")
            status.append(self._filter_text, style=f"bold black on {WARNING}")
            if pane.query_error is not None:  # a `?` expression that does not parse (yet)
                status.append(f" {pane.query_error}", style=f"bold {ERROR}")
            else:
                status.append(f" {count} matches")
        else:
            status.append(f"  {count} lines")
        if not self.line_detail_shown:
            status.append("  ⏎ whole line", style="dim")
        self._show_status(status)

    def _show_status(self, status: Text) -> None:
        if status != self._status_shown:  # a repaint costs a line's bytes on the terminal
            self._status_shown = status
            self.query_one("#status", Static).update(status, layout=False)

    @on(LogPane.Changed)
    def _log_pane_changed(self) -> None:
        self._update_status()
        pane = self.log_pane
        if self.line_detail_shown and pane.cursor_line is None and pane.is_current:
            pane.mark_line()  # a new view (another process, a filter): its newest line

    # -- the detail panel: one line in full ----------------------------------------------------

    def action_toggle_line_detail(self) -> None:
        detail = self.line_detail
        if detail.has_class("-shown"):
            detail.remove_class("-shown")
            self.log_pane.clear_cursor()
        else:
            detail.add_class("-shown")
            self.log_pane.mark_line()
            self._show_line_detail()
        self._update_status()

    @on(LogPane.CursorMoved)
    def _show_line_detail(self) -> None:
        if not self.line_detail_shown:
            return
        detail = self.line_detail
        detail.border_title = "line · ⏎/esc: close · shift+↑↓: previous/next · PgUp/PgDn: scroll"
        line = self.log_pane.cursor_line
        text = (
            Text("no line here", style="dim")
            if line is None
            else describe_line(line, self._name_colours.get(line.process, ""))
        )
        self.query_one("#line-detail-text", Static).update(text)
        detail.scroll_home(animate=False)

    # -- selection -----------------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#processes")
    def _selection_moved(self) -> None:
        self.log_pane.follow = True  # a newly selected process starts at its newest lines
        self._apply_query()

    def action_move_selection(self, step: int) -> None:
        self.process_table.move_selection(step)

    def action_show_all(self) -> None:
        self.process_table.select_row(ALL_ROW)

    def action_toggle_timestamps(self) -> None:
        self.log_pane.toggle_timestamps()

    def action_cycle_stream(self) -> None:
        self._stream_index = (self._stream_index + 1) % len(STREAM_CYCLE)
        self._apply_query()

    # -- the log ---------------------------------------------------------------------------------

    def action_toggle_follow(self) -> None:
        self.log_pane.follow = not self.log_pane.follow

    # The process table hands its paging keys to the log (see ProcessTable.BINDINGS), or to the
    # detail panel while it is shown (the log behind it holds still).
    def action_log_page_up(self) -> None:
        if self.line_detail_shown:
            self.line_detail.scroll_page_up(animate=False)
        else:
            self.log_pane.action_page_up()

    def action_log_page_down(self) -> None:
        if self.line_detail_shown:
            self.line_detail.scroll_page_down(animate=False)
        else:
            self.log_pane.action_page_down()

    def action_log_home(self) -> None:
        if self.line_detail_shown:
            self.line_detail.scroll_home(animate=False)
        else:
            self.log_pane.action_scroll_home()

    def action_log_end(self) -> None:
        if self.line_detail_shown:
            self.line_detail.scroll_end(animate=False)
        else:
            self.log_pane.action_scroll_end()

    def action_step_line(self, step: int) -> None:
        self.log_pane.action_step_line(step)

    def action_escape(self) -> None:
        if self._asking_to_quit:
            self._asking_to_quit = False
            self._update_status()
        elif self.line_detail_shown:
            self.action_toggle_line_detail()
        elif self._filter_text:
            self.action_clear_filter()
        elif self.focused is not self.process_table:
            self.process_table.focus()

    # -- the filter ------------------------------------------------------------------------------

    def action_open_filter(self) -> None:
        self.filter_input.add_class("-shown")
        self.filter_input.focus()

    def action_clear_filter(self) -> None:
        self.filter_input.value = ""  # posts Input.Changed, which re-applies the query
        self._set_filter("")
        self.filter_input.remove_class("-shown")
        self.process_table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        if not self._filter_text:
            self.filter_input.remove_class("-shown")
        self.process_table.focus()  # the selection keys select processes again

    def _set_filter(self, text: str) -> None:
        if text != self._filter_text:
            self._filter_text = text
            self._apply_query()

    # -- process control -------------------------------------------------------------------------

    def action_restart_process(self) -> None:
        self._control("restart")

    def action_stop_process(self) -> None:
        self._control("stop")

    def action_start_process(self) -> None:
        self._control("start")

    def _control(self, verb: str) -> None:
        name = self.selected_process
        if name is None:
            self.notify(
                f"select a process to {verb} (the 'all' row is every process)",
                severity="warning",
                markup=False,
            )
            return
        self._run_control(verb, name)

    @work(thread=True, exit_on_error=False, group="control", description="process control")
    def _run_control(self, verb: str, name: str) -> None:
        actions = {
            "start": self.engine.start_process,
            "stop": self.engine.stop_process,
            "restart": self.engine.restart_process,
        }
        try:
            outcome = actions[verb](name, TUI_USER)  # blocks: a stop waits for the end
        except LacrimosaError as exc:
            self.notify(f"{verb} {name}: {exc.message}", severity="error", markup=False)
            return
        self.notify(f"{name}: {outcome}", markup=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Expected failures are reported by the workers themselves; this is for the unexpected.
        if event.state == WorkerState.ERROR:
            self.notify(
                f"{event.worker.description} failed: {event.worker.error!r}",
                severity="error",
                markup=False,
            )

    # -- quitting --------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Overrides App.action_quit, so that every way out (q, ctrl+c, ctrl+q) stops processes.
        Attached, the first asks "detach or stop everything?" and the second stops everything."""
        if self.attached and not self._asking_to_quit:
            self._asking_to_quit = True
            self._update_status()
            return
        self._begin_quit()

    def action_detach(self) -> None:
        """Leave the console running, with its processes (attached only)."""
        if self.attached and not self._quitting:
            self.exit(DETACHED)

    def _hung_up(self) -> None:
        let_go_of_the_terminal()
        if not self._quitting:
            self.exit(HUNG_UP)

    def _begin_quit(self) -> None:
        """Show that processes are stopping, stop them all off the UI thread, then exit."""
        if self._quitting:
            return
        self._quitting = True
        self.events_view.release()  # the journal is closed by the shutdown
        self.audit_view.release()  # and the audit log
        self._update_status()
        self.notify("stopping processes…", markup=False)
        self._shutdown_console()

    @work(
        thread=True, exclusive=True, exit_on_error=False, group="shutdown", description="shutdown"
    )
    def _shutdown_console(self) -> None:
        ending: str | None = None
        try:
            self.engine.request_shutdown(TUI_USER)  # recorded in the audit log
            self.engine.shutdown()  # blocks until every process has stopped
        except LacrimosaError as exc:
            if not self.attached:
                raise
            # Attached with a key that may not stop the console (over HTTP, a read or write
            # key): the console goes on, and the app ends as a detach that says why.
            self.stop_refused = exc.message
            ending = DETACHED
        finally:
            self.call_from_thread(self.exit, ending)


def run_tui(console: Console, notices: Sequence[str] = ()) -> None:
    """Run the TUI on ``console`` (already started) until the user quits.

    Quitting stops every process first. If the app ends any other way (a crash), the processes
    are stopped here all the same: nothing may outlive the console.
    """
    try:
        LacrimosaApp(console, notices, settle_heap=True).run()
    finally:
        console.shutdown()  # idempotent; a no-op after a normal quit
