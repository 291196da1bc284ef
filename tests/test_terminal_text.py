"""engine/terminal_text.py: what a child or a datagram wrote, made safe for a terminal and JSON."""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lacrimosa.engine.terminal_text import SGR_RESET, json_text, terminal_safe

# Raw controls that may reach a terminal: any C0 but tab and newline, DEL, any C1.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SGR = re.compile("\x1b\\[[0-9;:]*m")


def only_sgr_escapes(text: str) -> bool:
    return RAW_CONTROL.search(SGR.sub("", text)) is None


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]52;c;aGVsbG8=\x07", "␛]52;c;aGVsbG8=␇"),  # clipboard write
        ("\x1b]0;pwned\x07", "␛]0;pwned␇"),  # window title
        ("\x1b[2J", "␛[2J"),  # clear screen
        ("\x1b[6n", "␛[6n"),  # cursor report: the reply would be typed into the shell
        ("\x1b[201~", "␛[201~"),  # end of a bracketed paste
        ("\x1b]8;;https://evil/\x1b\\ok\x1b]8;;\x1b\\", "␛]8;;https://evil/␛\\ok␛]8;;␛\\"),
        ("\x1bP1$r\x1b\\", "␛P1$r␛\\"),  # DCS
        ("\x1b_apc\x1b\\ \x1b^pm\x1b\\ \x1bXsos\x1b\\", "␛_apc␛\\ ␛^pm␛\\ ␛Xsos␛\\"),
        ("\x1b[>4;2m", "␛[>4;2m"),  # modifyOtherKeys: looks like SGR, is not
        ("\x1b[?1049h", "␛[?1049h"),  # alternate screen
        ("lone \x1b", "lone ␛"),
        ("\x9b2J \x9d0;t\x9c", "\\x9b2J \\x9d0;t\\x9c"),  # 8-bit CSI, OSC, ST
        ("\x85\x80\x9f", "\\x85\\x80\\x9f"),
        ("nul\x00bel\x07bs\x08del\x7fvt\x0b", "nul␀bel␇bs␈del␡vt␋"),
        ("tab\tkept", "tab\tkept"),
        ("a\rb", "a␍b"),  # a child cannot overwrite what came before on the line
        ("crlf\r", "crlf"),
        ("two\r\nlines\r\r", "two\nlines"),
        ("\x1b]0;unterminated and the rest", "␛]0;unterminated and the rest"),
        ("\x1b[12;", "␛[12;"),
    ],
)
def test_every_control_but_colour_is_shown_and_inert(raw: str, shown: str) -> None:
    for mode in ("color", "plain"):
        assert terminal_safe(raw, mode) == shown
    assert terminal_safe(raw, "raw") == raw


def test_colours_are_kept_or_stripped() -> None:
    text = "\x1b[31mred\x1b[0m \x1b[1;38;5;208mbold\x1b[m \x1b[38:2::1:2:3mtrue\x1b[0m"
    assert terminal_safe(text, "color") == text + SGR_RESET
    assert terminal_safe(text, "plain") == "red bold true"
    # A colour left on is reset at the end, so it does not run into what is printed next.
    assert terminal_safe("\x1b[31mstill red", "color") == "\x1b[31mstill red" + SGR_RESET
    assert terminal_safe("plain text", "color") == "plain text"


def test_stripping_colour_never_joins_a_new_sequence() -> None:
    # ESC, then an SGR, then "[2J": removing the SGR must not leave ESC [2J.
    assert terminal_safe("\x1b\x1b[31m[2J", "plain") == "␛[2J"
    assert terminal_safe("\x1b\x1b[31m[2J", "color") == "␛\x1b[31m[2J" + SGR_RESET
    assert terminal_safe("\x9b\x1b[0m2J", "plain") == "\\x9b2J"


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("a[];m0123:?\x1b\x07\x9b\x9d\x9c\r\n\t\x00\x7f\\é")),
        max_size=60,
    )
)
def test_nothing_but_sgr_survives_any_input(text: str) -> None:
    coloured = terminal_safe(text, "color")
    assert only_sgr_escapes(coloured)
    assert RAW_CONTROL.search(terminal_safe(text, "plain")) is None
    # Only a trailing carriage return is dropped; everything else is still there to be read.
    visible = SGR.sub("", coloured)
    assert len(visible) >= len(SGR.sub("", text).replace("\r", ""))


@pytest.mark.parametrize(
    "line",
    [
        "x" * (1 << 20),
        "\x01" * (1 << 20),
        "a\x1b" * (1 << 19),
        "\x1b[31mab" * (1 << 17),
        "\x1b[" + "1" * (1 << 20),  # an SGR that never ends
        "\x9b" * (1 << 20),
    ],
    ids=["plain", "c0", "escapes", "sgr", "unterminated", "c1"],
)
def test_a_one_megabyte_line_is_fast(line: str) -> None:
    start = time.perf_counter()
    for mode in ("color", "plain"):
        terminal_safe(line, mode)
    json_text({"text": line})
    assert time.perf_counter() - start < 0.8


def test_json_escapes_every_control_character() -> None:
    value = {"text": "c0 \x00\x1b[2J del \x7f c1 \x9b\x9d ls \u2028\u2029 é 中 ✓", "n": 1}
    text = json_text(value)
    assert RAW_CONTROL.search(text) is None and "\u2028" not in text and "\u2029" not in text
    assert "\\u009b\\u009d" in text and "\\u007f" in text and "\\u001b" in text
    assert "é 中 ✓" in text  # other text stays readable
    assert json.loads(text) == value
    assert json.loads(json_text(value, indent=2)) == value
    assert json.loads(json_text(["\ud800 lone"])) == ["\ud800 lone"]
