"""Turning one stored log line (raw bytes as the process wrote them) into safe, styled rich Text.

Lines can hold anything: invalid UTF-8, ANSI colour codes, cursor movement, ``\\r`` progress
updates, NULs, tabs, 64 KiB without a newline. What reaches the terminal must be exactly one row
of printable cells, so:

- ``\\r``: a terminal would show what was written after the last carriage return (progress bars
  redraw the whole line), so only that part is kept; a trailing ``\\r`` (CRLF output) is dropped.
- Everything but colour is made inert first (``engine/terminal_text.py``, the rules the CLI uses
  too): ANSI SGR codes are kept and become styles (rich's decoder); every other escape sequence
  (OSC 8 hyperlinks, titles, clipboard writes, cursor movement) is shown as text with its ESC as
  ``␛``, so rich never sees it (rich would turn OSC 8 into a link whose target the text hides).
- Other control characters (C0, DEL, C1, Unicode line separators) are shown as visible symbols,
  because they would move the cursor or break the row; tabs are expanded to 8-column stops.
- Only a bounded prefix of the bytes is decoded: the row is cropped to the screen width anyway,
  so a 64 KiB line costs what a screenful costs.

Only rich is used here (no Textual), so the formatting can be tested on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text

from ..engine.facade import ShownLine
from ..engine.logs.store import STDERR, SYSTEM
from ..engine.terminal_text import VISIBLE_CONTROLS, terminal_safe
from .palette import ERROR, WARNING

TAB_SIZE = 8
CONTINUED_MARKER = "↩"  # the line goes on in the next stored piece (split or flushed partial)
CROPPED_MARKER = "…"  # there is more to the right than fits on the screen

_STREAM_GUTTERS = {
    # stdout: blank, so ordinary output reads as plain text.
    STDERR: Text("▌ ", style=f"bold {ERROR}"),
    SYSTEM: Text("• ", style="dim"),
}
_BLANK_GUTTER = Text("  ")
_SYSTEM_STYLE = Style(dim=True, italic=True)
_MATCH_STYLE = Style(color="black", bgcolor=WARNING, bold=True)
_CONTINUED_STYLE = Style(color=WARNING, bold=True)
_CROPPED_STYLE = Style(dim=True)
_TIME_STYLE = Style(dim=True)

# The Unicode line/paragraph separators, which str.splitlines (and so rich) treats as line breaks,
# become visible symbols too; the other controls are terminal_safe's (VISIBLE_CONTROLS).
_LINE_SEPARATORS = {0x2028: "↵", 0x2029: "¶"}


@dataclass(frozen=True, slots=True)
class LineFormat:
    """How lines are laid out; part of the rendered-line cache key."""

    width: int  # cells available
    name_width: int = 0  # width of the process-name column; 0: no such column
    highlight: str | None = None  # text to mark (the live filter)
    ignore_case: bool = False
    timestamps: bool = False  # the time each line was read, before it (HH:MM:SS)


def decode_for_terminal(raw: bytes | memoryview, max_bytes: int) -> tuple[Text, bool]:
    """The visible text of a raw line, and whether bytes beyond ``max_bytes`` were left out."""
    data = bytes(raw).rstrip(b"\r")
    carriage_return = data.rfind(b"\r")
    if carriage_return >= 0:
        data = data[carriage_return + 1 :]
    truncated = len(data) > max_bytes
    if truncated:
        data = data[:max_bytes]
    # A stored line holds no newline, but one row must never become two.
    text = data.decode("utf-8", "replace").replace("\n", "\u240a")
    # Only SGR escapes are left after this: every other one is visible text now.
    text = terminal_safe(text, "color")
    if "\u2028" in text or "\u2029" in text:
        text = text.translate(_LINE_SEPARATORS)
    # Most lines have no escape codes, and rich's ANSI decoder is the main cost of a row.
    if "\x1b" in text:
        decoded = Text.from_ansi(text, no_wrap=True, end="")
    else:
        decoded = Text(text, no_wrap=True, end="")
    decoded.expand_tabs(TAB_SIZE)
    return decoded, truncated


_VISIBLE_KEEPING_LINES: dict[int, str] = {**VISIBLE_CONTROLS, **_LINE_SEPARATORS}
_VISIBLE_IN_A_ROW: dict[int, str] = {**_VISIBLE_KEEPING_LINES, 0x09: " ", 0x0A: "␊"}


def make_visible(text: str, *, keep_lines: bool = False) -> str:
    """``text`` with every control character (ESC included) shown as a symbol.

    For text that is not a log line (an event's payload): no ANSI decoding, no carriage-return
    handling. Tabs become one space, or are kept (with newlines) when ``keep_lines`` is set, for
    a multi-line panel that lays them out itself.
    """
    return text.translate(_VISIBLE_KEEPING_LINES if keep_lines else _VISIBLE_IN_A_ROW)


def byte_budget(width: int) -> int:
    """How many raw bytes to decode for a row of ``width`` cells.

    Generous, because escape codes and multi-byte characters take several bytes per cell.
    """
    return width * 16 + 256


def format_log_line(line: ShownLine, fmt: LineFormat, name_style: str | Style = "") -> Text:
    """One screen row for ``line``: stream gutter, optional process name, content, markers.

    The result is at most ``fmt.width`` cells wide (never wrapped).
    """
    row = Text(no_wrap=True, end="")
    row.append_text(_STREAM_GUTTERS.get(line.stream, _BLANK_GUTTER))
    if fmt.timestamps:
        row.append(time.strftime("%H:%M:%S ", time.localtime(line.time)), style=_TIME_STYLE)
    if fmt.name_width:
        name = line.process
        if len(name) > fmt.name_width:  # cut, and marked as cut
            name = name[: fmt.name_width - 1] + CROPPED_MARKER
        name = name.ljust(fmt.name_width)
        row.append(name + " ", style=name_style)
    content, truncated = decode_for_terminal(line.content, byte_budget(fmt.width))
    if line.stream == SYSTEM:
        content.stylize_before(_SYSTEM_STYLE)
    if fmt.highlight:
        content.highlight_words([fmt.highlight], _MATCH_STYLE, case_sensitive=not fmt.ignore_case)
    row.append_text(content)

    marker: Text | None = None
    if line.continued:
        marker = Text(CONTINUED_MARKER, style=_CONTINUED_STYLE)
    elif truncated or row.cell_len > fmt.width:
        marker = Text(CROPPED_MARKER, style=_CROPPED_STYLE)
    if marker is not None:
        room = max(fmt.width - marker.cell_len, 0)
        if row.cell_len > room:
            row.truncate(room)
        row.append_text(marker)
    if row.cell_len > fmt.width:
        row.truncate(fmt.width)
    return row
