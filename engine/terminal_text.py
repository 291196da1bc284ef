"""Text from children and datagrams made safe to print on the user's terminal, and safe JSON.

A child's output or an event's payload is data, never instructions to the terminal. Printed
as is, ``\\e]52;c;…\\a`` writes the clipboard, ``\\e]0;…\\a`` the window title, ``\\e[6n`` makes
the terminal type a reply into the shell, ``\\e[201~`` ends a bracketed paste early, and OSC 8
shows one link while opening another. So :func:`terminal_safe`, in the default modes:

- keeps SGR sequences (``ESC [ params m``: colours, bold, …) in ``"color"`` mode, and then ends
  the text with a reset (``ESC [ 0 m``) so that a colour left on does not run into what is printed
  after it (the next line's ``name |``, the shell prompt); removes them in ``"plain"`` mode.
  Params are digits, ``;`` and ``:`` only, so ``ESC [ > 4 m`` is not SGR;
- shows every other escape sequence as text that does nothing: its ESC becomes ``␛`` and the rest
  of the sequence stays as plain characters (CSI other than SGR, OSC 0/8/52, DCS, APC, PM, SOS,
  a lone ESC). Nothing is parsed to find where a sequence ends, so a malformed or unterminated
  one cannot swallow the rest of the line;
- shows the other C0 controls as the Unicode control pictures (``␀`` … ``␟``) and DEL as ``␡``;
  tab and newline are kept (the caller may pass several lines joined by ``\\n``);
- drops a carriage return at the end of a line (CRLF output: invisible on a terminal anyway) and
  shows any other one as ``␍``, so a child cannot overwrite what was printed before it on the line;
- shows every C1 control (U+0080 to U+009F, 8-bit CSI U+009B and OSC U+009D included) as
  ``\\x9b``-style text.

``"raw"`` returns the text unchanged, for those who pipe to a file and mean it.

The work is a regex scan (C speed) that returns at once for the common line with no control
character, then ``str.translate`` over the pieces between SGR sequences: no per-character Python
loop, so a 1 MB line costs milliseconds.

:func:`json_text` (JSON with every control character escaped) lives in engine/fastjson.py, which
the one-shot CLI imports without this module; it is re-exported here.

Standard library only (``re``): the CLI imports this for commands that print a child's text, and
so does the TUI.
"""

from __future__ import annotations

import re
from typing import Literal

from .fastjson import json_text as json_text  # here too, beside terminal_safe

TextMode = Literal["color", "plain", "raw"]
TEXT_MODES: tuple[TextMode, ...] = ("color", "plain", "raw")

ESCAPE_SYMBOL = "␛"
DELETE_SYMBOL = "␡"
SGR_RESET = "\x1b[0m"

# Every C0 control but tab and newline as its control picture (U+2400 + code), ESC as ␛; DEL and
# C1 as text. Carriage return is in here too: the trailing one is removed before translating.
VISIBLE_CONTROLS: dict[int, str] = {
    code: chr(0x2400 + code) for code in range(0x20) if code not in (0x09, 0x0A)
}
VISIBLE_CONTROLS[0x1B] = ESCAPE_SYMBOL
VISIBLE_CONTROLS[0x7F] = DELETE_SYMBOL
VISIBLE_CONTROLS.update({code: f"\\x{code:02x}" for code in range(0x80, 0xA0)})

# Any character :func:`terminal_safe` has work to do for (ESC is in \x0b-\x1f).
_NEEDS_WORK = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# SGR, captured so that re.split hands back the sequences between the text around them.
_SGR = re.compile("(\x1b\\[[0-9;:]*m)")
_TRAILING_CR = re.compile("\r+(?=\n|\\Z)")


def terminal_safe(text: str, mode: TextMode = "color") -> str:
    """``text`` as it may be written to a terminal: see the module docstring for the rules."""
    if mode == "raw" or not _NEEDS_WORK.search(text):
        return text
    if "\r" in text:
        text = _TRAILING_CR.sub("", text)
    if "\x1b[" not in text:
        return text.translate(VISIBLE_CONTROLS)
    # Split on the original text, never on text with SGR removed: removing a sequence must not
    # join what was around it into a new one (``ESC ESC[31m [2J`` is not ``ESC[2J``).
    pieces = _SGR.split(text)
    for i in range(0, len(pieces), 2):
        pieces[i] = pieces[i].translate(VISIBLE_CONTROLS)
    if mode == "plain":
        del pieces[1::2]
    elif len(pieces) > 1:
        pieces.append(SGR_RESET)
    return "".join(pieces)


# For one-line fields, tab and newline too: a field holds no layout of its own.
_FIELD_CONTROLS = {**VISIBLE_CONTROLS, 0x09: chr(0x2409), 0x0A: chr(0x240A)}


def field_safe(text: str) -> str:
    """A one-line field someone chose (a process name asked for, a key's name, an audit record's
    target) as it may be shown in a table cell: every control character visible and inert, colours
    included (``ESC [ 31 m`` shows as ``␛[31m``: what was sent, not what it would look like), and
    tab and newline as ``␉`` and ``␊`` so that the field stays on its row."""
    return (
        text.translate(_FIELD_CONTROLS)
        if _NEEDS_WORK.search(text) or "\t" in text or "\n" in text
        else text
    )
