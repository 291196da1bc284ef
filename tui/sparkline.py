"""The Overview's rate sparkline: a bar per column, in eighths of a cell, coloured by its height.

Textual's ``Sparkline`` draws the same picture through a rich renderable that blends a colour and
makes a style for every cell, and then goes through Textual's general rendering of rich output:
2.5 to 5 ms of the UI thread for a two-line sparkline at 120 columns, in every frame that shows the
Overview again (under an event flood, every switch to it; bench/tui_events.py). Here the bar
heights are computed once per data change, each of the few heights has one style, made once per
colour pair, and a row is a strip of runs of equal cells. The lines drawn are kept
(:class:`RemembersItsLines`) for as long as the data, size and colours stay the same: a switch back
to the Overview within the same second draws nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from rich.segment import Segment
from rich.style import Style
from textual.color import Color
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from .line_memo import RemembersItsLines

BARS = " ▁▂▃▄▅▆▇█"  # a cell filled to 0..8 eighths


def bucket_peaks(data: Sequence[float], width: int) -> list[float]:
    """The largest value of each of ``width`` consecutive, near-equal slices of ``data``; with
    fewer values than columns, each value spans several columns."""
    count = len(data)
    if not count:
        return []
    if count <= width:
        return [data[i * count // width] for i in range(width)]
    return [max(data[count * i // width : count * (i + 1) // width]) for i in range(width)]


def bar_eighths(peaks: Sequence[float], height: int) -> list[int]:
    """How many eighths of a cell each bar fills, out of ``8 * height``: the smallest value gets
    the lowest bar (one eighth), the largest a full column, the rest in proportion; all the same
    value, all the lowest bar."""
    if not peaks:
        return []
    low, high = min(peaks), max(peaks)
    extent = high - low
    top = 8 * height
    if not extent:
        return [1] * len(peaks)
    return [1 + round((value - low) / extent * (top - 1)) for value in peaks]


class RateSparkline(RemembersItsLines, Widget, can_focus=False):
    """A sparkline of ``data`` (set it to a new sequence to redraw), as many rows high as the
    widget; the colours come from the same component classes as Textual's ``Sparkline``."""

    COMPONENT_CLASSES = {"sparkline--max-color", "sparkline--min-color"}

    DEFAULT_CSS = """
    RateSparkline {
        height: 1;
        & > .sparkline--max-color { color: $primary; }
        & > .sparkline--min-color { color: $primary 30%; }
    }
    """

    def __init__(self, data: Sequence[float] = (), *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._data: tuple[float, ...] = tuple(data)
        self._bars: tuple[Size, tuple[int, ...]] | None = None  # (size, eighths per column)
        self._styles: tuple[Hashable, list[Style]] | None = None  # (what they depend on, styles)

    @property
    def data(self) -> tuple[float, ...]:
        return self._data

    @data.setter
    def data(self, values: Sequence[float]) -> None:
        values = tuple(values)
        if values != self._data:
            self._data = values
            self._bars = None
            self.refresh()

    def looks(self) -> Hashable:
        return (self.size, self._data, self._colours(), self.rich_style)

    def _colours(self) -> tuple[Color, Color]:
        """The bars' colours at the lowest and the highest value, over the background."""
        _, background = self.background_colors
        return (
            background + self.get_component_styles("sparkline--min-color").color,
            background + self.get_component_styles("sparkline--max-color").color,
        )

    def _bar_styles(self) -> list[Style]:
        """The style of a cell of a bar of each height in eighths (0..8 * height) over the
        widget's own style; an empty cell is in the widget's style alone. Made once per size,
        colours and widget style, not per cell."""
        base = self.rich_style
        colours = self._colours()
        height = max(self.size.height, 1)
        key = (colours, height, base)
        if self._styles is None or self._styles[0] != key:
            low, high = colours
            top = 8 * height
            styles = [
                base + Style.from_color(low.blend(high, eighths / top).rich_color)
                for eighths in range(top + 1)
            ]
            self._styles = (key, styles)
        return self._styles[1]

    def _eighths(self) -> tuple[int, ...]:
        size = self.size
        if self._bars is None or self._bars[0] != size:
            peaks = bucket_peaks(self._data, size.width)
            self._bars = (size, tuple(bar_eighths(peaks, max(size.height, 1))))
        return self._bars[1]

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        base = self.rich_style
        bars = self._eighths()
        styles = self._bar_styles()
        floor = 8 * (height - 1 - y)  # eighths below this row
        segments: list[Segment] = []
        run_text, run_style = "", None
        for eighths in bars:
            filled = min(max(eighths - floor, 0), 8)
            style = styles[eighths] if filled else base
            cell = BARS[filled]
            if style == run_style:
                run_text += cell
                continue
            if run_text:
                segments.append(Segment(run_text, run_style))
            run_text, run_style = cell, style
        if run_text:
            segments.append(Segment(run_text, run_style))
        if len(bars) < width:
            segments.append(Segment(" " * (width - len(bars)), base))
        return Strip(segments, width)
