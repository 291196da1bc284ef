"""A few lines of styled text that change often, drawn a screen row per line and never wrapped.

The Overview's counters are new four times a second under an event flood, and each switch to the
Overview draws them all again. As Textual ``Static`` widgets, each part went through Textual's
general content rendering (wrapping, alignment, a style stack per span): 1 to 2 ms of the UI
thread per part and frame at 120 columns (bench/tui_events.py). Here each line is one
:func:`row_strip`, and a line wider than the widget is cut with an ellipsis instead of being
wrapped onto a row of its own (which a ``Static`` did at 60 columns, though the parts are written
a row per line).
"""

from __future__ import annotations

from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from .line_render import CROPPED_MARKER
from .row_strip import row_strip


def cut_to(line: Text, width: int) -> Text:
    """``line`` if it fits in ``width`` cells, else its start and an ellipsis in ``width``."""
    if line.cell_len <= width:
        return line
    cut = line.copy()
    cut.truncate(max(width - 1, 0), overflow="crop")  # not the line's own overflow setting
    if width:
        cut.append(CROPPED_MARKER)
    return cut


class TextLines(Widget, can_focus=False):
    """Lines of ``text``, one screen row each; :meth:`update` shows new text."""

    DEFAULT_CSS = "TextLines { height: auto; }"

    def __init__(self, text: Text | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._lines: list[Text] = self._split(text)

    @staticmethod
    def _split(text: Text | None) -> list[Text]:
        return list(text.split("\n", allow_blank=True)) if text is not None else []

    @property
    def plain(self) -> str:
        """The text shown, without its styles."""
        return "\n".join(line.plain for line in self._lines)

    def update(self, text: Text) -> None:
        """Show ``text``; the screen is laid out again only when its number of lines changes
        (under a flood the counters change at every redraw, their line count does not)."""
        lines = self._split(text)
        layout = len(lines) != len(self._lines)
        self._lines = lines
        self.refresh(layout=layout)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._lines)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return max((line.cell_len for line in self._lines), default=0)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y >= len(self._lines):
            return Strip.blank(width, base)
        return row_strip(cut_to(self._lines[y], width), width, base, self.app.console)
