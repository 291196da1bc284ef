"""The Events view (key 3): the journal in order, one row per event, with a detail panel.

The list is virtual, like the log view: its height is the number of listed events and
``render_line(y)`` reads only the events around the visible window (``Journal.read_events`` on
those seqs), so a frame costs what the screen size costs, whether the journal holds ten events or
a million. Events read once are kept in an LRU by seq (a held event never changes) and rendered
rows in another.

Which events are listed is an :class:`~tui.event_rows.EventRows`: the held range, or the seqs of
one node and/or stream. The app's 20 Hz poll calls :meth:`EventsView.poll`, which compares the
journal's bounds with the last ones seen and does nothing more when they did not move (or moved
less than NEW_ROWS_INTERVAL after the last refresh; under a flood, FLOOD_ROWS_INTERVAL); a filtered
list is rebuilt in a thread worker (one at a time; requests meanwhile collapse into one more).

Following (the default) keeps the cursor on the newest event. When the journal overwrites the
events on screen (the reader was lapped), the list says so and moves to the oldest held event
rather than showing what is no longer there.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.cache import LRUCache
from textual.containers import Vertical, VerticalScroll
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Input, Static

from ..engine.events.frames import Event
from ..engine.facade import ConsoleFacade, JournalReader
from .event_render import (
    RowFormat,
    describe_event,
    event_row,
    header_row,
    missing_row,
    seq_width,
)
from .event_rows import EventFilter, EventRows, build_rows
from .line_memo import RemembersItsLines
from .overview import how_to_enable, send_command
from .palette import GOOD, WARNING
from .row_strip import row_strip
from .virtual_list import NEW_ROWS_INTERVAL, CursorList, OneBuildAtATime

# New events are shown at most this often while more than a screenful arrives between two
# refreshes (see EventsView.poll); NEW_ROWS_INTERVAL otherwise.
FLOOD_ROWS_INTERVAL = 0.25
_EVENT_CACHE_SIZE = 2048
_STRIP_CACHE_SIZE = 1024
_BUILD_GROUP = "event-rows"
MAX_NODE = (1 << 32) - 1
MAX_STREAM = (1 << 16) - 1


def parse_number(text: str) -> int | None:
    """A whole number as typed: ``42``, ``1,234``, ``1_000``, ``0x2a``; None if it is not one."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    try:
        return int(cleaned, 0)
    except ValueError:
        try:
            return int(cleaned, 10)  # "010": base 0 refuses leading zeros
        except ValueError:
            return None


class EventList(CursorList):
    """The listed events, oldest at the top; a cursor row; follows the newest by default."""

    class _RowsBuilt(Message):
        def __init__(self, rows: EventRows | None, error: str | None) -> None:
            super().__init__()
            self.rows = rows
            self.error = error

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.journal: JournalReader | None = None
        self.rows = EventRows(0, 0)
        self.event_filter = EventFilter()
        self.cursor = 0  # a row of ``rows``
        self.lapped = 0  # events overwritten under the window on screen, until the cursor moves
        self.empty_text = Text("no events yet", style="dim")
        self._rows_builds = OneBuildAtATime(
            self, self._prepare_build, group=_BUILD_GROUP, description="filter events"
        )
        self._events: LRUCache[int, Event] = LRUCache(_EVENT_CACHE_SIZE)
        self._strips = LRUCache(_STRIP_CACHE_SIZE)  # (seq, RowFormat, is the cursor row)

    # -- what is listed --------------------------------------------------------------------------

    @property
    def is_current(self) -> bool:
        """True when the rows on screen were built for the current filter."""
        return self.rows.filter == self.event_filter and not self._rows_builds.running

    def cursor_event(self) -> Event | None:
        """The event under the cursor (read from the journal if it is not cached)."""
        if not 0 <= self.cursor < len(self.rows):
            return None
        return self._event(self.rows.seq_at(self.cursor))

    def set_filter(self, wanted: EventFilter) -> None:
        if wanted != self.event_filter:
            self.event_filter = wanted
            self.reload()

    def reload(self) -> None:
        """Bring the rows up to date with the journal (at once when unfiltered, else in a worker)."""
        journal = self.journal
        if journal is None:
            return
        if not self.event_filter.active and not self._rows_builds.running:
            self._install(build_rows(journal, self.event_filter, None))  # O(1): a range
            return
        self._rows_builds.request()

    def _prepare_build(self) -> Callable[[], None]:
        journal, wanted = self.journal, self.event_filter
        previous = self.rows if self.rows.filter == wanted else None
        assert journal is not None

        def build() -> None:
            try:
                rows, error = build_rows(journal, wanted, previous), None
            except Exception as exc:  # shown to the user (unless the journal was released)
                rows, error = None, f"{type(exc).__name__}: {exc}"
            self.post_message(self._RowsBuilt(rows, error))

        return build

    @on(_RowsBuilt)
    def _rows_built(self, message: _RowsBuilt) -> None:
        message.stop()
        build_again = self._rows_builds.finished()
        if self.journal is None:
            return  # released (the console is shutting down): nothing more is read
        if message.error is not None:
            # Not retried at once: the next poll that sees the journal move asks again.
            self.notify(f"events: {message.error}", severity="error", markup=False)
        elif message.rows is not None and message.rows.filter == self.event_filter:
            self._install(message.rows)
        elif message.rows is not None:
            build_again = True  # built for a filter that has changed since
        if build_again:
            self.reload()

    def release(self) -> None:
        """Stop reading the journal (it is about to be closed); what is cached stays on screen."""
        self.journal = None

    def _install(self, rows: EventRows) -> None:
        old = self.rows
        same_filter = rows.filter == old.filter
        top = round(self.scroll_y)
        top_seq = old.seq_at(top) if top < len(old) else None
        cursor_seq = old.seq_at(self.cursor) if self.cursor < len(old) else None
        self.rows = rows
        self.set_virtual_size(Size(self.size.width, len(rows)))
        if self.follow:
            self.cursor = max(len(rows) - 1, 0)
            self._scroll_to_end()
        elif top_seq is not None and top_seq < rows.tail and same_filter:
            # The events on screen were overwritten: say so, and go to the oldest one held. Under
            # a flood this repeats at every refresh: one notification, then the count grows.
            if not self.lapped:
                self.notify(
                    f"events: {rows.tail - top_seq:,} events were overwritten while you read; "
                    "showing the oldest held",
                    severity="warning",
                    markup=False,
                )
            self.lapped += rows.tail - top_seq
            self.cursor = 0
            self.scroll_to(y=0, animate=False, immediate=True, force=True)
        else:
            if cursor_seq is not None:
                self.cursor = rows.row_at_or_after(cursor_seq)
            self.cursor = min(self.cursor, max(len(rows) - 1, 0))
            if top_seq is not None and same_filter:
                # The screen stays where the user put it (the wheel may have left the cursor
                # off screen; new events do not bring it back).
                self.scroll_to(
                    y=rows.row_at_or_after(top_seq), animate=False, immediate=True, force=True
                )
            else:
                self._show_cursor()
        self.refresh()
        self.post_message(self.Changed())

    # -- the cursor ------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def cursor_moved(self) -> None:
        self.lapped = 0

    def go_to(self, seq: int) -> bool:
        """Put the cursor on ``seq`` (or the first listed event after it); False if none."""
        self.follow = False
        if not self.event_filter.active and seq >= self.rows.head:
            self.reload()  # unfiltered rows are built at once
        row = self.rows.row_at_or_after(seq)
        if row >= len(self.rows):
            return False
        self.move_cursor(row)
        # Near the top of the screen, so that what follows it is in view.
        self.scroll_to(y=max(row - 2, 0), animate=False, immediate=True, force=True)
        return True

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.lapped = 0
        super().watch_follow(follow)

    # -- rendering -------------------------------------------------------------------------------

    def _event(self, seq: int) -> Event | None:
        event = self._events.get(seq)
        if event is None and self.journal is not None:
            # Read the visible page and one page either side in one call.
            height = max(self.size.height, 1)
            row = self.rows.row_at_or_after(seq)
            wanted = [
                int(s)
                for s in self.rows.seqs_between(row - height, row + 2 * height)
                if int(s) not in self._events
            ]
            for read in self.journal.read_events(wanted):
                self._events[read.seq] = read
            event = self._events.get(seq)
        return event

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base_style, cursor_style = self._styles()
        row = round(self.scroll_y) + y
        rows = self.rows
        if row >= len(rows):
            if y == 0 and not len(rows):
                return row_strip(self.empty_text, width, base_style, self.app.console)
            return Strip.blank(width, base_style)
        seq = rows.seq_at(row)
        fmt = RowFormat(width=width, seq_width=seq_width(rows.head))
        is_cursor = row == self.cursor
        key = (seq, fmt, is_cursor)
        strip = self._strips.get(key)
        if strip is None:
            event = self._event(seq)
            if event is None and self.journal is None:
                return Strip.blank(width, base_style)  # released: nothing more is read
            text = event_row(event, fmt) if event is not None else missing_row(seq, fmt)
            over = cursor_style if is_cursor else None
            strip = row_strip(text, width, base_style, self.app.console, over)
            if event is not None:
                self._strips[key] = strip
        return strip

    def visible_rows(self) -> list[str]:
        """The text of each row on screen, trailing blanks removed (for tests and debugging)."""
        return [self.render_line(y).text.rstrip() for y in range(self.size.height)]


class PromptInput(Input):
    """The one-line question of ``g``, ``n`` and ``t``; Escape cancels it."""

    BINDINGS = [Binding("escape", "cancel", "cancel", show=False)]

    class Cancelled(Message):
        pass

    def action_cancel(self) -> None:
        self.post_message(self.Cancelled())


class EventsView(RemembersItsLines, Vertical):
    """The events list, its status line, the detail panel and the prompt; see the module doc."""

    DEFAULT_CSS = """
    EventsView {
        #events-status {
            height: 1;
            background: $panel;
            color: $text;
        }
        #events-header {
            height: 1;
            color: $text-muted;
        }
        #events-hint {
            display: none;
            padding: 1 2;
        }
        #event-detail {
            display: none;
            height: 60%;
            border-top: solid $primary;
            padding: 0 1;
            scrollbar-size-vertical: 1;
            &.-shown { display: block; }
        }
        #events-prompt {
            display: none;
            height: 1;
            border: none;
            padding: 0 1;
            &.-shown { display: block; }
        }
        &.-no-sequencer {
            #events-hint { display: block; }
            #event-list, #events-header { display: none; }
        }
    }
    """

    BINDINGS = [
        Binding("enter", "toggle_detail", "detail"),
        Binding("g", "prompt('goto')", "go to"),
        Binding("n", "prompt('node')", "node"),
        Binding("t", "prompt('stream')", "stream"),
        Binding("f", "toggle_follow", "follow"),
        Binding("escape", "escape", show=False),
    ]

    _NEED_EVENTS = frozenset({"toggle_detail", "prompt", "toggle_follow", "escape"})
    _PROMPTS = {
        "goto": "go to seq",
        "node": "show node (empty: every node)",
        "stream": "show stream (empty: every stream)",
    }

    def __init__(self, console: ConsoleFacade, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._engine = console
        self._seen_bounds: tuple[int, int] | None = None
        self._prompt_mode: str | None = None
        self._detail_seq: int | None = None
        self._header_format: RowFormat | None = None  # what the column titles were drawn for
        self._reloaded_at = float("-inf")  # when poll last took new events (time.monotonic)
        self._released = False

    def compose(self) -> ComposeResult:
        yield Static(id="events-status")
        yield Static(id="events-header")
        yield EventList(id="event-list")
        yield Static(how_to_enable(), id="events-hint")
        with VerticalScroll(id="event-detail"):
            yield Static(id="event-detail-text")
        yield PromptInput(id="events-prompt")

    @property
    def event_list(self) -> EventList:
        return self.query_one("#event-list", EventList)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#events-prompt", PromptInput)

    @property
    def detail_shown(self) -> bool:
        return self.query_one("#event-detail").has_class("-shown")

    def on_mount(self) -> None:
        sequencer = self._engine.sequencer
        if sequencer is None:
            self.add_class("-no-sequencer")
        else:
            self.event_list.journal = sequencer.journal
            self.event_list.empty_text = Text(
                f"no events yet · send one: {send_command(sequencer.address)}",
                style="dim",
                no_wrap=True,
            )
        self._update_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Without a sequencer there is nothing to act on: the keys are left out of the footer.
        return self._engine.sequencer is not None or action not in self._NEED_EVENTS

    def focus_default(self) -> None:
        """Focus what a key press should reach first when the view is shown."""
        if self.prompt.has_class("-shown"):
            self.prompt.focus()
        else:
            self.event_list.focus()

    # -- reading the journal -------------------------------------------------------------------

    def poll(self, force: bool = False) -> None:
        """From the app's timer: refresh when the journal's bounds moved (else do nothing), at
        most every NEW_ROWS_INTERVAL unless ``force`` (the view was just shown), or every
        FLOOD_ROWS_INTERVAL while more than a screenful arrives between refreshes.

        Under a flood the bounds move at every poll, and each refresh draws a screenful of new
        rows: at the poll's 20 Hz that was most of the UI thread's work, and made keys wait. At
        10 Hz it still took a fifth of a core beside the ingest process (bench/tui_events.py)."""
        events_list = self.event_list
        journal = events_list.journal
        if journal is None:
            return
        bounds = journal.bounds()
        if bounds == self._seen_bounds:
            return
        now = time.monotonic()
        interval = NEW_ROWS_INTERVAL
        seen = self._seen_bounds
        if seen is not None and bounds[1] - seen[1] >= max(events_list.size.height, 1):
            # A screenful or more arrived since the last refresh: a flood, whose rows no eye
            # reads at any rate. Fewer refreshes leave the UI thread (and the cores) free.
            interval = FLOOD_ROWS_INTERVAL
        if not force and now - self._reloaded_at < interval:
            return  # a later poll shows them
        self._seen_bounds = bounds
        self._reloaded_at = now
        events_list.reload()

    def release(self) -> None:
        """The console is shutting down: read the journal no more (it is about to be closed)."""
        self._released = True
        self.event_list.release()

    @on(EventList.Changed)
    def _list_changed(self) -> None:
        self._update_status()
        if self.detail_shown:
            self._show_detail()

    def _update_status(self) -> None:
        status = Text(no_wrap=True, overflow="ellipsis")
        status.append(" events ", style="bold reverse")
        if self._engine.sequencer is None:
            status.append("  no sequencer")
            self.query_one("#events-status", Static).update(status, layout=False)
            return
        events_list = self.event_list
        rows = events_list.rows
        status.append("  follow: ")
        if events_list.follow:
            status.append("on", style=f"bold {GOOD}")
        else:
            status.append("off", style=f"bold {WARNING}")
        wanted = events_list.event_filter
        if wanted.active:
            status.append("  filter: ")
            status.append(wanted.describe(), style=f"bold black on {WARNING}")
            if events_list.is_current:
                status.append(f" {len(rows):,} {'match' if len(rows) == 1 else 'matches'}")
            else:
                status.append(" …")
        if events_list.lapped:
            status.append(f"  lapped: {events_list.lapped:,} overwritten", style=f"bold {WARNING}")
        held = rows.head - rows.tail
        status.append(f"  {held:,} held")
        if held:
            status.append(f" (seq {rows.tail:,}-{rows.head - 1:,})", style="dim")
        # One row each, whatever they say: no layout of the screen (under a flood the status
        # changes at every poll, and a layout of every widget at 20 Hz cost the UI thread more
        # than drawing the new rows).
        self.query_one("#events-status", Static).update(status, layout=False)
        fmt = RowFormat(width=max(events_list.size.width, 1), seq_width=seq_width(rows.head))
        if fmt != self._header_format:
            self._header_format = fmt
            self.query_one("#events-header", Static).update(header_row(fmt), layout=False)

    def on_resize(self) -> None:
        self._update_status()

    # -- the detail panel ------------------------------------------------------------------------

    def action_toggle_detail(self) -> None:
        detail = self.query_one("#event-detail")
        if detail.has_class("-shown"):
            detail.remove_class("-shown")
            self._detail_seq = None
            if self.app.focused is detail:
                self.event_list.focus()
        else:
            detail.add_class("-shown")
            self._show_detail()
        self.call_after_refresh(self.event_list._show_cursor)

    def _show_detail(self) -> None:
        events_list = self.event_list
        event = events_list.cursor_event()
        seq = None if event is None else event.seq
        if seq == self._detail_seq and seq is not None:
            return
        self._detail_seq = seq
        detail = self.query_one("#event-detail", VerticalScroll)
        # The view's width, not the panel's: a panel shown a moment ago is not laid out yet.
        width = max(self.size.width - 3, 40)  # the panel's padding and scrollbar
        text = (
            Text("no event selected", style="dim")
            if event is None
            else describe_event(event, width)
        )
        self.query_one("#event-detail-text", Static).update(text)
        detail.scroll_home(animate=False)

    # -- keys ------------------------------------------------------------------------------------

    def action_toggle_follow(self) -> None:
        self.event_list.follow = not self.event_list.follow

    def action_escape(self) -> None:
        if self.detail_shown:
            self.action_toggle_detail()
        elif self.event_list.event_filter.active:
            self.event_list.set_filter(EventFilter())
            self._update_status()

    def action_prompt(self, mode: str) -> None:
        prompt = self.prompt
        self._prompt_mode = mode
        wanted = self.event_list.event_filter
        current = {"node": wanted.node, "stream": wanted.stream}.get(mode)
        prompt.value = "" if current is None else str(current)
        placeholder = self._PROMPTS[mode]
        if mode == "goto":
            rows = self.event_list.rows
            if rows.head > rows.tail:
                placeholder += f" ({rows.tail:,}-{rows.head - 1:,})"
        prompt.placeholder = placeholder + " · enter: ok · esc: cancel"
        prompt.add_class("-shown")
        prompt.focus()

    def _close_prompt(self) -> None:
        self._prompt_mode = None
        self.prompt.remove_class("-shown")
        self.event_list.focus()

    @on(PromptInput.Cancelled)
    def _prompt_cancelled(self) -> None:
        self._close_prompt()

    @on(Input.Submitted, "#events-prompt")
    def _prompt_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        mode, text = self._prompt_mode, event.value.strip()
        self._close_prompt()
        if mode == "goto":
            self._go_to(text)
        elif mode in ("node", "stream"):
            self._filter(mode, text)

    def _go_to(self, text: str) -> None:
        seq = parse_number(text)
        if seq is None:
            if text:
                self.notify(f"not a seq: {text!r}", severity="error", markup=False)
            return
        journal = self.event_list.journal
        if journal is None:
            return
        tail, head = journal.bounds()
        if not tail <= seq < head:
            held = f"{tail:,}-{head - 1:,}" if head > tail else "nothing yet"
            self.notify(
                f"seq {seq:,} is not held; the journal holds {held}",
                severity="warning",
                markup=False,
            )
            return
        events_list = self.event_list
        if not events_list.go_to(seq):
            self.notify(
                f"no event at or after seq {seq:,} matches {events_list.event_filter.describe()}",
                severity="warning",
                markup=False,
            )
        elif not events_list.rows.holds(seq):
            self.notify(
                f"seq {seq:,} does not match the filter; showing the next one that does",
                markup=False,
            )

    def _filter(self, field: str, text: str) -> None:
        wanted = self.event_list.event_filter
        if text:
            value = parse_number(text)
            limit = MAX_NODE if field == "node" else MAX_STREAM
            if value is None or not 0 <= value <= limit:
                self.notify(
                    f"{field}: expected a number from 0 to {limit}, not {text!r}",
                    severity="error",
                    markup=False,
                )
                return
        else:
            value = None
        if field == "node":
            wanted = EventFilter(node=value, stream=wanted.stream)
        else:
            wanted = EventFilter(node=wanted.node, stream=value)
        self.event_list.set_filter(wanted)
        self._update_status()
