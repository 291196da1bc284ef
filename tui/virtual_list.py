"""What the virtual lists, the log pane, the events list and the audit list, have in common.

:class:`FollowingScrollView` follows the end of its content until the user scrolls up with the
wheel or the scrollbar. What following keeps in view, and which keys stop it, is up to each widget.

:class:`CursorList` adds a cursor row moved by the keys, which turn following off (End turns it
back on, with the cursor on the last row). The audit list is one; the events list has the same
keys written out on its own (it came first), and could become one.

:class:`OneBuildAtATime` rebuilds a widget's content in a thread worker, because a build may scan
much stored data and must not stall the app's thread. At most one build is in flight: requests
arriving meanwhile collapse into one more build when it finishes, made from the inputs of that
moment, so a burst of requests costs two builds, not one per request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from math import ceil

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Offset, Region, Size
from textual.message import Message
from textual.reactive import var
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBar, ScrollTo, ScrollUp
from textual.strip import Strip
from textual.widget import Widget

from .line_memo import RemembersItsLines

CURSOR_COMPONENT = "cursor-list--cursor"  # the style of a CursorList's cursor row
# New rows are shown at most this often (the log pane's lines, the events list's events): a
# followed list scrolls, every row scrolled in is drawn and written to the terminal again (4-5 KB a
# frame at 80x24), and the app's 20 Hz poll would double that, and the UI thread's work under a
# flood, for no row the eye can follow.
NEW_ROWS_INTERVAL = 0.1

# What a scrollbar draws: its size, hover and grab states, and its cells.
_Looks = tuple[Size, bool, Offset | None, tuple[Segment, ...]]


class QuietScrollBar(RemembersItsLines, ScrollBar):
    """A vertical scrollbar that repaints only when what it draws changes.

    Textual's repaints the whole bar whenever the content's length or the scroll position
    changes, though with thousands of lines the thumb stays on the same cells: for a log
    pane that grows ten times a second, that is a cell on every row rewritten each time, some
    600 bytes sent to the terminal at 80x24.
    """

    _drawn: _Looks | None = None
    _moved = False  # set by the watchers below: the refresh that follows may be needless

    def watch_window_virtual_size(self) -> None:
        self._moved = True

    def watch_window_size(self) -> None:
        self._moved = True

    def watch_position(self) -> None:
        self._moved = True

    def _looks(self) -> _Looks:
        window_size = self.window_size if self.window_size < self.window_virtual_size else 0
        bar = self.renderer.render_bar(
            size=self.size.height if self.vertical else self.size.width,
            virtual_size=ceil(self.window_virtual_size),
            window_size=ceil(window_size),
            position=self.position,
            thickness=self.thickness,
            vertical=self.vertical,
        )
        return (self.size, self.mouse_over, self.grabbed, tuple(bar.segments))

    def looks(self) -> Hashable:
        """What it draws, in the colours its container's styles give it (ScrollBar.render)."""
        styles = self.parent.styles if self.parent is not None else self.styles
        return (
            self._looks(),
            styles.scrollbar_background,
            styles.scrollbar_background_hover,
            styles.scrollbar_background_active,
            styles.scrollbar_color,
            styles.scrollbar_color_hover,
            styles.scrollbar_color_active,
            self.parent.background_colors if self.parent is not None else None,
        )

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> QuietScrollBar:
        moved, self._moved = self._moved, False
        if self.is_mounted and not (regions or layout or recompose):
            drawn, looks = self._drawn, self._looks()
            self._drawn = looks
            if (
                moved
                and drawn is not None
                and drawn[:3] == looks[:3]
                and len(drawn[3]) == len(looks[3])
                and self.vertical
            ):
                # The same bar but for its thumb: repaint the rows (a cell each) that changed.
                changed = [
                    y for y, (a, b) in enumerate(zip(drawn[3], looks[3], strict=True)) if a != b
                ]
                if not changed:
                    return self
                regions = (Region(0, changed[0], self.size.width, changed[-1] - changed[0] + 1),)
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)


class FollowingScrollView(ScrollView):
    """A scroll view that keeps its end in view (``follow``) until scrolled up."""

    follow: var[bool] = var(True)
    """Keep the end in view as content arrives."""

    @property
    def vertical_scrollbar(self) -> ScrollBar:
        """Widget.vertical_scrollbar, made a :class:`QuietScrollBar`."""
        if self._vertical_scrollbar is None:
            self._vertical_scrollbar = bar = QuietScrollBar(
                vertical=True, name="vertical", thickness=self.scrollbar_size_vertical
            )
            bar.display = False
            self.app._start_widget(self, bar)
        return self._vertical_scrollbar

    def set_virtual_size(self, size: Size, repaint: bool = True) -> None:
        """Set ``virtual_size``, laying the screen out only when the vertical scrollbar comes or
        goes (the content's width changes then).

        Textual's ``virtual_size`` lays the whole screen out on every change: ~13 ms for the
        Events view at 120x40, at every refresh of a list that grows, or whose held count moves,
        under a flood. A change that leaves the scrollbar where it was needs only the scrollbar
        redrawn and the scroll position kept in range (Textual's ``_scroll_update``, which a
        layout would run). ``repaint``: the rows are repainted too."""
        if size == self.virtual_size:
            return
        shown = self.show_vertical_scrollbar
        self.set_reactive(Widget.virtual_size, size)
        self._refresh_scrollbars()
        if self.show_vertical_scrollbar != shown:
            self.refresh(repaint=repaint, layout=True)
            return
        self._scroll_update(size)
        if repaint:
            self.refresh()

    def _stop_following(self) -> None:
        self.follow = False

    def _scroll_to_end(self) -> None:
        # Forced: when the content has just outgrown the screen, Textual has not yet laid out the
        # scrollbar and would otherwise refuse to scroll (allow_vertical_scroll is still False).
        self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._stop_following()

    def on_scroll_up(self, event: ScrollUp) -> None:  # a click on the scrollbar above the thumb
        self._stop_following()

    def on_scroll_to(self, event: ScrollTo) -> None:  # a drag of the scrollbar thumb
        if event.y is not None and event.y < self.max_scroll_y:
            self.follow = False


class CursorList(FollowingScrollView, can_focus=True):
    """A FollowingScrollView of ``row_count`` rows with a cursor row (``cursor``).

    Subclasses give ``row_count``, render the cursor row with CURSOR_COMPONENT's style in
    ``render_line``, and post :class:`CursorList.Changed` when their rows change. They keep drawn
    rows in ``_strips``, keyed by tuples whose last item says whether it is the cursor row, drawn
    in the styles ``_styles()`` gives."""

    COMPONENT_CLASSES = {CURSOR_COMPONENT}

    DEFAULT_CSS = """
    CursorList {
        height: 1fr;
        background: $surface;
        color: $text;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        & > .cursor-list--cursor {
            background: $block-cursor-blurred-background;
        }
        &:focus > .cursor-list--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """

    BINDINGS = [
        Binding("up,k", "move(-1)", show=False),
        Binding("down,j", "move(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "first", show=False),
        Binding("end", "last", show=False),
    ]

    class Changed(Message):
        """The rows, the cursor or the follow state changed (for a status line, a detail)."""

    cursor = 0  # a row
    _strips: LRUCache[tuple[Hashable, ...], Strip]  # made by each subclass; see the docstring
    _row_styles: tuple[Style, Style] | None = None  # see _styles
    _strips_styles: tuple[Style, Style] | None = None  # what _strips were drawn in

    @property
    def row_count(self) -> int:
        raise NotImplementedError

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self._row_styles is not None:
            self._strips_styles = self._row_styles
        self._row_styles = None  # read again at the next row drawn, once every style is new

    def _styles(self) -> tuple[Style, Style]:
        """The rows' base style and the cursor row's, computed once until the styles change.

        Each is a walk up the widget's ancestors; under a flood every row on screen is new at
        every poll, and that walk per row cost as much as formatting the row."""
        styles = self._row_styles
        if styles is None:
            styles = self._row_styles = (
                self.rich_style,
                self.get_component_rich_style(CURSOR_COMPONENT),
            )
            # The styles are baked into the cached strips. A focus change (at every switch to or
            # from the view) changes only the cursor row's style: the other rows' strips stay.
            drawn, self._strips_styles = self._strips_styles, styles
            if drawn is not None and drawn[0] != styles[0]:
                self._strips.clear()
            elif drawn is not None and drawn[1] != styles[1]:
                cursor_rows = [key for key in self._strips.keys() if key[-1]]  # noqa: SIM118
                for key in cursor_rows:
                    self._strips.discard(key)
        return styles

    def move_cursor(self, row: int, *, stop_following: bool = True) -> None:
        if stop_following:
            self.follow = False
        row = min(max(row, 0), max(self.row_count - 1, 0))
        if row != self.cursor:
            self.cursor = row
            self.cursor_moved()
            self.refresh()
        self._show_cursor()
        self.post_message(self.Changed())

    def cursor_moved(self) -> None:
        """Called when the cursor lands on another row (for a subclass to forget a notice)."""

    def _show_cursor(self) -> None:
        height = max(self.size.height, 1)
        top = round(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True, force=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True, force=True)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            last = max(self.row_count - 1, 0)
            if last != self.cursor:
                self.cursor = last
                self.refresh()
            self._scroll_to_end()
        self.post_message(self.Changed())

    def on_resize(self) -> None:
        # Not the reactive: a resize follows a layout, and each view switch (the list shown
        # again) brings one; setting ``virtual_size`` laid the screen out a second time.
        self.set_virtual_size(Size(self.size.width, self.row_count))
        if self.follow:
            self._scroll_to_end()
        else:
            self._show_cursor()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and round(self.scroll_y) + offset.y < self.row_count:
            self.move_cursor(round(self.scroll_y) + offset.y)

    def action_move(self, step: int) -> None:
        self.move_cursor(self.cursor + step)

    def action_page(self, step: int) -> None:
        self.move_cursor(self.cursor + step * max(self.size.height - 1, 1))

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.follow = True


class OneBuildAtATime:
    """Runs ``widget``'s builds in a thread worker, one at a time (see the module docstring).

    ``prepare`` is called on the app's thread as each build starts, so that it reads the newest
    inputs, and returns the work for the worker thread. The work reports back by ``post_message``;
    the widget's handler of that message calls :meth:`finished`.
    """

    def __init__(
        self,
        widget: Widget,
        prepare: Callable[[], Callable[[], None]],
        *,
        group: str,
        description: str,
    ) -> None:
        self._widget = widget
        self._prepare = prepare
        self._group = group
        self._description = description
        self._wanted = False
        self.running = False

    def request(self) -> None:
        """Start a build now, or when the one in flight has finished."""
        self._wanted = True
        if not self.running:
            self._start()

    def _start(self) -> None:
        self._wanted = False
        self.running = True
        self._widget.run_worker(
            self._prepare(),
            thread=True,
            group=self._group,
            exit_on_error=False,
            description=self._description,
        )

    def finished(self) -> bool:
        """The build in flight has reported back; True if another was requested meanwhile.

        The widget then requests that one itself, after installing what this build made.
        """
        self.running = False
        wanted, self._wanted = self._wanted, False
        return wanted
