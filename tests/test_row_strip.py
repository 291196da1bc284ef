"""tui/row_strip.py: a row's strip made by walking its spans gives the cells rich's Text.render
gives, for any text, styles, width and cursor style."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

from lacrimosa.tui.row_strip import rendered_row_strip, row_strip

CONSOLE = Console(width=200, color_system="truecolor", force_terminal=True)
STYLES = [
    Style(color="#5fafd7"),
    Style(dim=True),
    Style(color="red", bold=True),
    Style(bgcolor="#202020", italic=True),
    "bold",
    "dim",
    "repr.number",  # a name from rich's theme, as Text.render reads it
]
BASE = Style(color="#d0d0d0", bgcolor="#1c1c1c")
CURSOR = Style(color="#000000", bgcolor="#87afff", bold=True)

pieces = st.lists(
    st.tuples(
        st.text(alphabet=st.sampled_from("ab c-9界é✗…"), max_size=12),
        st.none() | st.sampled_from(STYLES),
    ),
    max_size=8,
)


def cells(strip: Strip) -> list[tuple[str, Style | None]]:
    return [(char, segment.style) for segment in strip for char in segment.text]


def built(parts: list[tuple[str, str | Style | None]], own: str | Style | None) -> Text:
    text = Text(style=own or "", no_wrap=True, end="")
    for plain, style in parts:
        text.append(plain, style)
    return text


@settings(max_examples=300, deadline=None)
@given(
    parts=pieces,
    own=st.none() | st.sampled_from(STYLES),
    width=st.integers(0, 80),
    cursor=st.booleans(),
)
def test_side_by_side_spans_give_the_cells_text_render_gives(
    parts: list[tuple[str, str | Style | None]],
    own: str | Style | None,
    width: int,
    cursor: bool,
) -> None:
    text = built(parts, own)
    over = CURSOR if cursor else None
    fast = row_strip(text, width, BASE, CONSOLE, over)
    assert fast.cell_length == width
    assert cells(fast) == cells(rendered_row_strip(text, width, BASE, CONSOLE, over))
    assert text.plain == built(parts, own).plain  # the text given is left as it was


@settings(max_examples=100, deadline=None)
@given(parts=pieces, width=st.integers(0, 60), start=st.integers(0, 20), length=st.integers(1, 20))
def test_overlapping_spans_are_rendered_by_rich(
    parts: list[tuple[str, str | Style | None]], width: int, start: int, length: int
) -> None:
    text = built(parts, None)
    text.stylize(Style(underline=True), start, start + length)  # over what is there already
    fast = row_strip(text, width, BASE, CONSOLE, CURSOR)
    assert fast.cell_length == width
    assert cells(fast) == cells(rendered_row_strip(text, width, BASE, CONSOLE, CURSOR))
