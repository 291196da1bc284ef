"""The live log view: a virtual scroll view over one LineWindow (an engine LogView in process).

The pane never holds lines. Its virtual height is the number of matching lines of the current
LogView, and ``render_line(y)`` fetches only the lines around the visible window, so a frame costs
what the screen size costs, whether the store holds a hundred lines or millions (STYLE habit 4).

Building a LogView scans new blocks (and, for a new filter text, every stored block), so it runs in
a thread worker: at most one build is in flight, and requests arriving meanwhile collapse into one
more build when it finishes. The engine is read only by that worker and by ``render_line``
on the app's own thread, never by engine threads.

Rendered rows are cached as Strips in an LRU keyed by (line id, LineFormat): a stored line never
changes, so a row rendered once is reused while it stays on screen or is scrolled back to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rich.style import Style
from textual import events, on
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.strip import Strip

from ..engine.errors import LacrimosaError
from ..engine.facade import ConsoleFacade, LineWindow, ShownLine
from ..engine.logs.query import LogQuery
from .line_render import LineFormat, format_log_line
from .row_strip import row_strip
from .virtual_list import FollowingScrollView, OneBuildAtATime

_STRIP_CACHE_SIZE = 4096
_BUILD_GROUP = "log-view"
_CURSOR_STYLE = Style(reverse=True)  # the marked line (shown in the detail panel)
# Timestamps are shown from this width on, until the user toggles them (an 80-column terminal
# keeps its room for the lines).
TIMESTAMPS_FROM_WIDTH = 140


class LogPane(FollowingScrollView, can_focus=True):
    """Shows the lines of ``console`` that match ``log_query``; follows the end by default."""

    DEFAULT_CSS = """
    LogPane {
        background: $surface;
        color: $text;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        &:focus {
            background-tint: $foreground 5%;
        }
    }
    """

    # The selection keys select processes wherever the focus is in the log view (the app's
    # move_selection); shift+up/down move through the log a line at a time instead.
    BINDINGS = [
        Binding("up,k", "app.move_selection(-1)", show=False),
        Binding("down,j", "app.move_selection(1)", show=False),
        Binding("shift+up", "step_line(-1)", show=False),
        Binding("shift+down", "step_line(1)", show=False),
        Binding("enter", "app.toggle_line_detail", show=False),
    ]

    class Changed(Message):
        """The view, its line count or the follow state changed (for the status line)."""

    class CursorMoved(Message):
        """The marked line changed (for the detail panel)."""

    class _ViewBuilt(Message):
        """From the build worker: the new view for ``query``, or why there is none."""

        def __init__(self, query: LogQuery, view: LineWindow | None, error: str | None) -> None:
            super().__init__()
            self.query = query
            self.view = view
            self.error = error

    def __init__(
        self,
        console: ConsoleFacade,
        name_colours: Mapping[str, str] | None = None,
        name_width: int = 12,
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self._engine = console
        self._name_colours = dict(name_colours or {})
        self._name_width = name_width  # of the process-name column in the merged view
        self._query = LogQuery()
        self._view: LineWindow | None = None
        self._view_query: LogQuery | None = None
        self._view_builds = OneBuildAtATime(
            self, self._prepare_build, group=_BUILD_GROUP, description="build log view"
        )
        self._last_error: str | None = None  # reported once, not on every failed rebuild
        self.query_error: str | None = None  # why the current `?` filter's view was not built
        # The lines around the visible window, fetched once per new view or scroll position.
        self._window_start = 0
        self._window: Sequence[ShownLine] = []
        self._strips: LRUCache[tuple[int, LineFormat], Strip] = LRUCache(_STRIP_CACHE_SIZE)
        # The line cursor (for the detail panel): the id of the marked line, None when unmarked.
        self._cursor_id: int | None = None
        self._timestamps: bool | None = None  # None: by width (TIMESTAMPS_FROM_WIDTH)

    # -- what is shown ---------------------------------------------------------------------------

    @property
    def log_query(self) -> LogQuery:
        """What the pane shows. (Not ``query``: that is Textual's DOM query method.)"""
        return self._query

    @property
    def line_count(self) -> int:
        """Lines in the view on screen (all of them, not just the visible ones)."""
        return len(self._view) if self._view is not None else 0

    @property
    def is_current(self) -> bool:
        """True when the view on screen was built for the current query."""
        return self._view is not None and self._view_query == self._query

    @property
    def new_lines_visible(self) -> bool:
        """Whether lines added to the view would show: when following, or when the view's end
        is on screen."""
        return self.follow or int(self.scroll_offset.y) + self.size.height >= self.line_count

    @property
    def timestamps(self) -> bool:
        """Whether each line shows the time it was read: as toggled, else by the pane's width."""
        if self._timestamps is not None:
            return self._timestamps
        return self.content_width >= TIMESTAMPS_FROM_WIDTH

    def toggle_timestamps(self) -> None:
        self._timestamps = not self.timestamps
        self.refresh()  # rows are cached by their format, which now differs
        self.post_message(self.Changed())

    def set_query(self, query: LogQuery) -> None:
        if query != self._query:
            self._query = query
            self.clear_cursor()  # another view: the marked line may not be in it
            self.reload()

    # -- the line cursor -------------------------------------------------------------------------

    @property
    def cursor_line(self) -> ShownLine | None:
        """The marked line, if any (and still in the view)."""
        position = self.cursor_position
        return None if position is None else self._line_at(position)

    @property
    def cursor_position(self) -> int | None:
        view = self._view
        if self._cursor_id is None or view is None or not self.is_current:
            return None
        position = view.position_of(self._cursor_id)
        line = self._line_at(position)
        return position if line is not None and line.id == self._cursor_id else None

    def mark_line(self, position: int | None = None) -> ShownLine | None:
        """Mark the line at ``position`` (default: the last line on screen) and stop following,
        so that it stays put; returns it (None when the view is empty)."""
        if position is None:
            position = min(int(self.scroll_offset.y) + self.size.height, self.line_count) - 1
        line = self._line_at(max(position, 0))
        if line is None:
            return None
        self.follow = False
        self._cursor_id = line.id
        self._scroll_to_position(max(position, 0))
        self.refresh()
        self.post_message(self.CursorMoved())
        return line

    def clear_cursor(self) -> None:
        if self._cursor_id is not None:
            self._cursor_id = None
            self.refresh()
            self.post_message(self.CursorMoved())

    def action_step_line(self, step: int) -> None:
        """Move the line cursor by ``step`` lines, or scroll by a line when nothing is marked."""
        position = self.cursor_position
        if position is None:
            if step < 0:
                self.action_scroll_up()
            else:
                self.action_scroll_down()
            return
        self.mark_line(min(max(position + step, 0), max(self.line_count - 1, 0)))

    def _scroll_to_position(self, position: int) -> None:
        top = int(self.scroll_offset.y)
        height = max(self.size.height, 1)
        if position < top:
            self.scroll_to(y=position, animate=False, immediate=True)
        elif position >= top + height:
            self.scroll_to(y=position - height + 1, animate=False, immediate=True)

    def reload(self) -> None:
        """Rebuild the view (new lines arrived, or the query changed), off the app's thread."""
        self._view_builds.request()

    def _prepare_build(self) -> Callable[[], None]:
        query = self._query
        engine = self._engine

        def build() -> None:
            # The view travels in a message, not as the worker's result: a finished Worker sits in
            # reference cycles until the cyclic GC runs, and while it held the view, the view's
            # snapshot kept evicted blocks alive (hundreds of MiB under a flood of output).
            try:
                view, error = engine.query(query), None
            except Exception as exc:  # shown to the user; the next build may well succeed
                view = None
                error = exc.message if isinstance(exc, LacrimosaError) else repr(exc)
            self.post_message(self._ViewBuilt(query, view, error))

        return build

    @on(_ViewBuilt)
    def _view_built(self, event: _ViewBuilt) -> None:
        event.stop()
        build_again = self._view_builds.finished()
        if event.view is not None and event.query == self._query:
            self._install(event.query, event.view)
        if event.query == self._query and event.error != self.query_error:
            # A `?` filter's expression that does not parse (yet: it is being typed) is shown
            # by the app's status line, not notified at every key.
            self.query_error = event.error if event.query.where is not None else None
            self.post_message(self.Changed())
        if (
            event.error is not None
            and event.error != self._last_error
            and event.query.where is None
        ):
            self.notify(f"log view: {event.error}", severity="error", markup=False)
        self._last_error = event.error
        if build_again:
            self.reload()

    def _install(self, query: LogQuery, view: LineWindow) -> None:
        # The line at the top of the screen, to keep in place when not following: as old
        # blocks are evicted, the same line moves to a smaller position in the new view.
        anchor = self._line_at(round(self.scroll_y)) if not self.follow else None
        same_query = query == self._view_query
        shown = self._row_ids() if same_query else None
        self._view = view
        self._view_query = query
        self._window = []
        # Without repainting: a longer view changes nothing on screen until it is scrolled.
        self.set_virtual_size(Size(self.content_width, len(view)), repaint=False)
        if self.follow:
            self._scroll_to_end()
        elif anchor is not None and same_query:
            self.scroll_to(y=view.position_of(anchor.id), animate=False, immediate=True)
        if shown is None:
            self.refresh()
        else:
            self._refresh_rows_changed(shown)
        self.post_message(self.Changed())

    # Every row repainted is written to the terminal again (some 200 bytes a row, every byte
    # crossing an SSH link): a new view of the same query repaints only the rows that show
    # another line than before. Scrolling (following the end) repaints the whole pane.

    def _row_ids(self) -> list[int | None]:
        """The id of the line on each row of the pane (None for a blank row)."""
        top = int(self.scroll_offset.y)
        return [
            None if line is None else line.id
            for line in (self._line_at(top + y) for y in range(self.size.height))
        ]

    def _refresh_rows_changed(self, shown: list[int | None]) -> None:
        changed = [
            y for y, (was, now) in enumerate(zip(shown, self._row_ids(), strict=True)) if was != now
        ]
        if changed:
            self.refresh(Region(0, changed[0], self.size.width, changed[-1] - changed[0] + 1))

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self._scroll_to_end()
        self.post_message(self.Changed())

    # -- scrolling: moving up stops following ----------------------------------------------------

    def _stop_following(self) -> None:
        # A view that fits on the screen cannot scroll, so keys or the wheel there should not
        # stop follow.
        if self.max_scroll_y > 0:
            self.follow = False

    def action_scroll_up(self) -> None:
        self._stop_following()
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self._stop_following()
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self._stop_following()
        self.scroll_home(animate=False, immediate=True, x_axis=False)

    def action_scroll_end(self) -> None:
        self.follow = True
        self._scroll_to_end()

    def on_resize(self, event: events.Resize) -> None:
        self.set_virtual_size(Size(event.size.width, self.line_count))  # no second layout
        self._window = []
        if self.follow:
            self._scroll_to_end()
        else:
            # The detail panel opening shrinks the pane: keep the marked line on screen.
            position = self.cursor_position
            if position is not None:
                self.call_after_refresh(self._scroll_to_position, position)

    # -- rendering -------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # the base style (focus tint, theme) is baked into cached strips

    def _line_at(self, index: int) -> ShownLine | None:
        view = self._view
        if view is None or not 0 <= index < len(view):
            return None
        offset = index - self._window_start
        if not 0 <= offset < len(self._window):
            # Fetch the visible page plus one page above and one below, so that scrolling by a
            # line or a page is served from this window.
            height = max(self.size.height, 1)
            top = min(index, int(self.scroll_offset.y))
            self._window_start = max(top - height, 0)
            self._window = view.lines(self._window_start, max(index, top + height) + height)
            offset = index - self._window_start
        return self._window[offset]

    @property
    def content_width(self) -> int:
        """Cells a row may use: the pane's width less the scrollbar, when one is shown (the
        scrollbar is drawn over the row's last cells, and with it the row's cut marker)."""
        return self.scrollable_content_region.width

    def line_format(self) -> LineFormat:
        # From the view's own query: until a new view arrives, the old one is drawn as before.
        query = self._view_query or self._query
        return LineFormat(
            width=self.content_width,
            name_width=self._name_width if query.processes is None else 0,
            highlight=query.contains.decode("utf-8", "replace") if query.contains else None,
            ignore_case=query.ignore_case,
            timestamps=self.timestamps,
        )

    def render_line(self, y: int) -> Strip:
        width = self.content_width
        base_style = self.rich_style
        line = self._line_at(int(self.scroll_offset.y) + y)
        if line is None:
            return Strip.blank(width, base_style)
        if line.id == self._cursor_id:
            return self._render_row(line, width, base_style).apply_style(_CURSOR_STYLE)
        return self._render_row(line, width, base_style)

    def _render_row(self, line: ShownLine, width: int, base_style: Style) -> Strip:
        fmt = self.line_format()
        key = (line.id, fmt)
        strip = self._strips.get(key)
        if strip is None:
            text = format_log_line(line, fmt, self._name_colours.get(line.process, ""))
            strip = row_strip(text, width, base_style, self.app.console)
            self._strips[key] = strip
        return strip

    def visible_lines(self) -> list[ShownLine]:
        """The lines on screen now, top to bottom."""
        top = int(self.scroll_offset.y)
        lines = (self._line_at(top + y) for y in range(self.size.height))
        return [line for line in lines if line is not None]
