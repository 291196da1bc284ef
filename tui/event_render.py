"""Turning journal events into safe, styled rich Text: list rows, the detail panel, hex dumps.

Payloads are bytes from the network: text payloads have their control characters shown as
symbols (never sent to the terminal), binary ones are shown as hex. A row is cut to its width;
a preview decodes only a bounded prefix of the payload, so a row costs what a screenful costs.

Only rich is used here (no Textual), so the formatting can be tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.style import Style
from rich.text import Text

from ..engine.events.frames import CLOCK_IGNORED, COUNTER_BITS, Event, lamport_wall_time
from ..engine.humanize import local_clock
from .line_render import CROPPED_MARKER, make_visible
from .palette import ERROR, GOOD, WARNING
from .process_table import format_count

# Column widths; node ids are u32 and stream ids u16, but small ones are the rule: a larger id
# pushes the rest of its row right rather than costing every row the room.
TIME_WIDTH = 12  # hh:mm:ss.mmm
NODE_WIDTH = 5
STREAM_WIDTH = 4
FLAGS_WIDTH = 4
SIZE_WIDTH = 4
MIN_SEQ_WIDTH = 3
MISMATCH_MARK = "✗"  # the slot's checksum does not match its fields and record

_MISMATCH_STYLE = Style(color=ERROR, bold=True)
_DIM = Style(dim=True)
_BINARY_STYLE = Style(color="#5fafd7")
_CLOCK_IGNORED_STYLE = Style(color=WARNING, bold=True)
_PREVIEW_BYTES = 256  # at most this much of a payload is decoded for a row


@dataclass(frozen=True, slots=True)
class RowFormat:
    """How event rows are laid out; part of the rendered-row cache key."""

    width: int  # cells available
    seq_width: int  # digits of the largest seq held


def seq_width(head: int) -> int:
    """Digits needed for every seq below ``head``."""
    return max(MIN_SEQ_WIDTH, len(str(max(head - 1, 0))))


def local_datetime(seconds: float) -> str:
    """``YYYY-mm-dd hh:mm:ss.mmm`` in local time, or a note if it is past the year 9999 (a
    sender's clock is any 64-bit value, and datetime refuses such a time)."""
    try:
        moment = datetime.fromtimestamp(seconds)
    except (ValueError, OverflowError, OSError):
        return "(beyond the year 9999)"
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def header_row(fmt: RowFormat) -> Text:
    """The column titles above the rows, aligned with them."""
    titles = (
        " "
        + "seq".rjust(fmt.seq_width)
        + " "
        + "time".ljust(TIME_WIDTH)
        + " "
        + "node".rjust(NODE_WIDTH)
        + " "
        + "strm".rjust(STREAM_WIDTH)
        + " "
        + "flg".ljust(FLAGS_WIDTH)
        + " "
        + "size".rjust(SIZE_WIDTH)
        + " payload"
    )
    text = Text(titles, style="bold", no_wrap=True, end="")
    text.truncate(fmt.width)
    return text


def _size_cell(size: int) -> str:
    return str(size) if size < 10_000 else format_count(size)


def payload_preview(payload: bytes, text: str | None = None) -> Text:
    """One line of a payload: its text with controls made visible, else its bytes in hex."""
    if not payload:
        return Text("(empty)", style=_DIM, end="")
    if text is None:
        try:
            text = payload[:_PREVIEW_BYTES].decode("utf-8")
        except UnicodeDecodeError as exc:
            # A multi-byte character cut at the preview's end is still text.
            if len(payload) > _PREVIEW_BYTES and exc.start >= _PREVIEW_BYTES - 3:
                text = payload[: exc.start].decode("utf-8")
            else:
                text = None
    if text is not None:
        return Text(make_visible(text[:_PREVIEW_BYTES]), no_wrap=True, end="")
    return Text(payload[: _PREVIEW_BYTES // 3].hex(" "), style=_BINARY_STYLE, no_wrap=True, end="")


def event_row(event: Event, fmt: RowFormat) -> Text:
    """One list row for ``event``; at most ``fmt.width`` cells wide."""
    row = Text(no_wrap=True, end="")
    if event.valid:
        row.append(" ")
    else:
        row.append(MISMATCH_MARK, style=_MISMATCH_STYLE)
    row.append(str(event.seq).rjust(fmt.seq_width))
    row.append(" " + local_clock(event.time), style=_DIM)
    row.append(f" {event.node:>{NODE_WIDTH}} {event.stream:>{STREAM_WIDTH}} ")
    if event.is_text:
        row.append("text", style=_DIM)
    else:
        row.append(f"{event.sender_flags:03x}")
        row.append(
            "!" if event.flags & CLOCK_IGNORED else " ",
            style=_CLOCK_IGNORED_STYLE,
        )
    row.append(f" {_size_cell(len(event.payload)):>{SIZE_WIDTH}} ")
    preview = payload_preview(event.payload)
    row.append_text(preview)
    if row.cell_len > fmt.width:
        # Cut, and say so: the rest is in the detail panel.
        row.truncate(max(fmt.width - 1, 0))
        row.append(CROPPED_MARKER, style=_DIM)
    return row


def missing_row(seq: int, fmt: RowFormat) -> Text:
    """A row whose event was overwritten after the list was built (the next refresh drops it)."""
    row = Text(" " + str(seq).rjust(fmt.seq_width) + "  (overwritten)", style=_DIM, end="")
    row.truncate(fmt.width)
    return row


# -- the detail panel ----------------------------------------------------------------------------


def hex_dump(data: bytes, width: int) -> Text:
    """``offset  hex bytes  |ascii|`` lines; 16 bytes a line when ``width`` allows, else 8."""
    offset_width = max(4, len(f"{max(len(data) - 1, 0):x}"))
    per_line = 16 if width >= offset_width + 2 + 16 * 3 + 1 + 18 else 8
    out = Text(no_wrap=True, end="")
    for start in range(0, len(data), per_line):
        chunk = data[start : start + per_line]
        if start:
            out.append("\n")
        out.append(f"{start:0{offset_width}x}", style=_DIM)
        out.append("  " + chunk.hex(" ").ljust(per_line * 3 - 1))
        ascii_ = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        out.append("  |", style=_DIM)
        out.append(ascii_)
        out.append("|", style=_DIM)
    return out


def _field(out: Text, label: str, *parts: str | Text) -> None:
    out.append(f"{label:<9}", style="bold")
    for part in parts:
        out.append_text(part if isinstance(part, Text) else Text(part))
    out.append("\n")


def _lamport_text(lamport: int) -> str:
    counter = lamport & ((1 << COUNTER_BITS) - 1)
    return f"{lamport} = {local_datetime(lamport_wall_time(lamport))} + counter {counter}"


def describe_event(event: Event, width: int) -> Text:
    """Every field of ``event``, then its whole payload (text, or a hex dump)."""
    out = Text(end="")
    text = event.payload_text()
    kind = "text" if event.is_text else "framed"
    _field(
        out,
        "seq",
        Text(str(event.seq), style="bold"),
        f"  node {event.node}  stream {event.stream}  kind {kind}  size {len(event.payload):,}",
    )
    _field(out, "lamport", _lamport_text(event.lamport))
    names = []
    if event.is_text:
        names.append("text")
    if event.flags & CLOCK_IGNORED:
        names.append("clock ignored: the sender's clock was too far ahead")
    flags = f"0x{event.flags:04x} (sender 0x{event.sender_flags:03x}"
    _field(out, "flags", flags + "".join(f", {name}" for name in names) + ")")
    if event.sender_clock is None:
        _field(out, "sender", "no clock (plain text)")
    elif event.sender_clock == 0:
        _field(out, "sender", "clock 0 (the sender keeps none)")
    else:
        _field(out, "sender", "clock " + _lamport_text(event.sender_clock))
    if event.valid:
        _field(out, "valid", Text("yes, the checksum matches", style=GOOD))
    else:
        _field(out, "valid", Text(f"{MISMATCH_MARK} NO: checksum mismatch", style=_MISMATCH_STYLE))
    if not event.payload:
        out.append("payload  (empty)", style="bold")
    elif text is not None:
        out.append(f"payload  UTF-8 text, {len(event.payload):,} bytes\n", style="bold")
        out.append(make_visible(text, keep_lines=True).expandtabs(8))
    else:
        out.append(f"payload  binary, {len(event.payload):,} bytes\n", style="bold")
        out.append_text(hex_dump(event.payload, width))
    return out
