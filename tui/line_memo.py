"""Widgets whose lines come back unchanged: drawn once, then handed over again.

Textual draws every widget on the screen again after a layout, containers wholly covered by their
children included, and a widget's own cache of drawn lines is emptied by each of its refreshes. A
view switch is a layout: the screen, the view switcher, the view's container, the footer and the
list's scrollbar were all drawn anew, the same lines as the last time that view was shown (1 to
1.5 ms each at 120x40, a third of the frame that shows the new view; bench/tui_events.py).

:class:`RemembersItsLines` keeps the last few sets of lines a widget drew, keyed by the crop and
by what the lines depend on (``looks()``: for a container, its size and colours), and hands them
over when the key comes again. Strips are immutable, so the same ones can be composed again.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from textual.containers import Vertical
from textual.geometry import Region
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import ContentSwitcher

if TYPE_CHECKING:
    _WidgetMixin = Widget
else:  # a mixin: the widget class it is mixed into keeps its own class settings (can_focus...)
    _WidgetMixin = object

# Sets of lines kept per widget: enough for a footer's hints in each of the five views, with room.
REMEMBERED = 8


class RemembersItsLines(_WidgetMixin):
    """A widget whose drawn lines are kept for when it looks the same again (see the module)."""

    _remembered: dict[tuple[Region, Hashable], list[Strip]] | None = None

    def looks(self) -> Hashable:
        """What the lines drawn depend on, beyond the crop. The default, for a container with no
        content of its own (no border, no text): its size and its colours."""
        return (self.size, self.background_colors, self.rich_style)

    def render_lines(self, crop: Region) -> list[Strip]:
        key = (crop, self.looks())
        remembered = self._remembered
        if remembered is None:
            remembered = self._remembered = {}
        lines = remembered.get(key)
        if lines is None:
            lines = super().render_lines(crop)
            if len(remembered) >= REMEMBERED:
                del remembered[next(iter(remembered))]  # the oldest
            remembered[key] = lines
        return list(lines)


class PlainScreen(RemembersItsLines, Screen[object]):
    """The app's screen: its background is drawn again only when its size or colours change."""


class ViewSwitcher(RemembersItsLines, ContentSwitcher):
    """The container of the views, one shown at a time."""


class PlainVertical(RemembersItsLines, Vertical):
    """A vertical container whose background is drawn again only when it changes."""
