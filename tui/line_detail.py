"""The log view's detail panel: one stored line in full, wrapped, with where and when it came from.

A row of the log view is cut to the screen's width (with ``…``); the panel shows the whole line,
decoded as the row is (colours kept, control characters shown as symbols, what a terminal would
show after a carriage return), and wrapped to the panel's width. A line is at most the config's
``max_line`` (64 KiB by default), so the panel's text is bounded.

Only rich is used here (no Textual), so the formatting can be tested on its own.
"""

from __future__ import annotations

from rich.text import Text

from ..engine.facade import ShownLine
from ..engine.logs.store import STDERR, SYSTEM
from .event_render import local_datetime
from .line_render import CONTINUED_MARKER, decode_for_terminal
from .palette import ERROR

LABEL_WIDTH = 9
_STREAM_STYLES = {STDERR: f"bold {ERROR}", SYSTEM: "dim"}


def _field(out: Text, label: str, *parts: str | Text) -> None:
    out.append(label.ljust(LABEL_WIDTH), style="bold")
    for part in parts:
        out.append_text(part if isinstance(part, Text) else Text(part))
    out.append("\n")


def describe_line(line: ShownLine, name_style: str = "") -> Text:
    """The panel's text for ``line``: its process, stream, time, id and size, then the line."""
    raw = bytes(line.content)
    out = Text(end="", overflow="fold")
    _field(
        out,
        "process",
        Text(line.process, style=f"bold {name_style}".strip()),
        "  stream ",
        Text(line.stream_name, style=_STREAM_STYLES.get(line.stream, "bold")),
    )
    _field(out, "time", local_datetime(line.time), f"  line id {line.id:,}")
    size = f"{len(raw):,} bytes"
    if line.continued:
        size += f"; goes on in the next stored line {CONTINUED_MARKER}"
    if b"\r" in raw.rstrip(b"\r"):
        size += "; carriage returns: what follows the last one is shown"
    _field(out, "size", Text(size, style="dim"))
    out.append("\n")
    content, _ = decode_for_terminal(raw, len(raw))
    content.no_wrap = False
    content.overflow = "fold"  # a long word (a URL, base64) is cut at the edge, not lost
    out.append_text(content)
    return out
